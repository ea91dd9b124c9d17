"""Which vector service the gateway analyses (gateway/sources.py) when ``ambience serve`` could not
start some of them: a service it marked unavailable (its model weights are missing) is never the
default, and asking for it says why."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from ambience_support.processes import free_port
from gateway.proxy import ServiceClients
from gateway.runner_marks import RunnerMarks
from gateway.settings import GatewaySettings
from gateway.sources import AnalysisSources, SourceUnavailable

NAMES = ["image_text", "global_features", "color", "phash"]


def sources_with(tmp_path: Path, marked: dict[str, str]) -> AnalysisSources:
    folder = tmp_path / "run"
    folder.mkdir(exist_ok=True)
    for name, reason in marked.items():
        (folder / f"{name}.unavailable").write_text(reason)
    urls = {name: f"http://127.0.0.1:{free_port()}" for name in NAMES}  # nothing answers
    settings = GatewaySettings(data_dir=tmp_path / "gateway", services=NAMES, service_urls=urls)
    clients = ServiceClients(settings, CollectorRegistry())
    return AnalysisSources(settings, clients, settings.enabled(), RunnerMarks(folder, ttl_s=0))


def test_the_default_source_skips_what_the_runner_could_not_start(tmp_path: Path) -> None:
    sources = sources_with(tmp_path, {})
    assert sources.source(None) == "image_text"  # EXPLORE_SOURCES' first
    (tmp_path / "run" / "image_text.unavailable").write_text("model weights missing")
    assert sources.source(None) == "global_features"
    assert asyncio.run(sources.resolve(None)) == "global_features"  # none answers: the first left
    with pytest.raises(SourceUnavailable, match=r"image_text is not running: .* \(model weights missing\)"):
        sources.source("image_text")
    assert sources.source("color") == "color"  # asked for by name, and running
    asyncio.run(sources.clients.close())


def test_with_no_default_source_running_near_shots_are_not_looked_for_and_moments_say_why(
    tmp_path: Path,
) -> None:
    sources = sources_with(tmp_path, {"image_text": "model weights missing", "global_features": "no weights"})
    assert not sources.has_default()  # the similar step links nothing instead of waiting for days
    with pytest.raises(SourceUnavailable) as refused:
        asyncio.run(sources.resolve(None))
    said = str(refused.value)
    assert "could not start image_text (model weights missing), global_features (no weights)" in said
    assert said.endswith("name another source (color, phash)")
    asyncio.run(sources.clients.close())


def test_the_listing_offers_what_runs_and_says_why_the_others_do_not(tmp_path: Path) -> None:
    """What the Moments and Map pages offer in their source picker (GET /analysis_sources)."""
    sources = sources_with(tmp_path, {"image_text": "model weights missing"})
    listing = asyncio.run(sources.listing())
    assert listing["default"] == "global_features"
    assert listing["sources"] == [
        {"name": "image_text", "runs": False, "why": "model weights missing"},
        {"name": "global_features", "runs": True, "why": None},
        {"name": "color", "runs": True, "why": None},
        {"name": "phash", "runs": True, "why": None},
    ]
    (tmp_path / "run" / "global_features.unavailable").write_text("no weights")
    assert asyncio.run(sources.listing())["default"] is None  # the page says so, and offers color, phash
    asyncio.run(sources.clients.close())

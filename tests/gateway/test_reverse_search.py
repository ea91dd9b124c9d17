"""Reverse search driven directly (no gateway HTTP): real phash and color services (in-process, served
over HTTP: ambience_support.inprocess) holding a few generated pictures; the duplicate and fusion
policies on the services' replies."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from ambience_support.images import encode, synthetic_image
from ambience_support.inprocess import inprocess_services
from ambience_support.pg import TestServer
from ambience_support.processes import free_port
from gateway.proxy import CallResult, ServiceClients
from gateway.reverse_search import DuplicateSearchUnavailable, ReverseSearch, merge_duplicates, merge_rankings
from gateway.runner_marks import RunnerMarks
from gateway.settings import UPSTREAMS, GatewaySettings

NAMES = ["phash", "color"]
STORED = range(6)
SIZE = (200, 150)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[dict[str, str]]:
    with inprocess_services(
        tmp_path_factory.mktemp("search"), pg_server.new_database("search"), NAMES
    ) as running:
        for name, svc in running.items():
            for image_id in STORED:
                reply = httpx.post(
                    f"{svc.url}/calculate_{UPSTREAMS[name].store}",
                    files={"image": ("document", encode(synthetic_image(image_id, SIZE)))},
                    data={"image_id": str(image_id)},
                    timeout=60,
                )
                assert reply.status_code == 200, reply.text
        yield {name: svc.url for name, svc in running.items()}


def search_with(tmp_path: Path, urls: dict[str, str], mode: str, data: bytes, **settings: Any) -> Any:
    """One reverse search (``similar`` or ``duplicates``) as the gateway makes it."""
    config = GatewaySettings(
        data_dir=tmp_path / "gateway", services=list(urls), service_urls=urls, result_k=5, **settings
    )

    async def run() -> Any:
        clients = ServiceClients(config, CollectorRegistry())
        try:
            search = ReverseSearch(config, clients, config.enabled())
            return await getattr(search, mode)(data)
        finally:
            await clients.close()

    return asyncio.run(run())


def query(seed: int) -> bytes:
    """Stored picture ``seed`` as a query."""
    return encode(synthetic_image(seed, SIZE))


def test_similar_asks_every_search_service_and_fuses_their_rankings(
    services: dict[str, str], tmp_path: Path
) -> None:
    result = search_with(tmp_path, services, "similar", query(3))
    reply = result.reply
    assert result.failed == {}
    assert reply["phash_res"][0]["image_id"] == reply["color_res"][0]["image_id"] == 3
    assert reply["unified_res"][0]["image_id"] == 3
    assert len(reply["phash_res"]) <= 5  # result_k
    # Every known result key is there, empty for services that are not enabled.
    assert reply["local_features_res"] == [] and reply["image_text_res"] == []


def test_a_service_that_is_down_or_hangs_is_left_out_and_named(
    services: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        hung = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = search_with(
            tmp_path, {**services, "color": hung}, "similar", query(2), search_timeouts_s={"color": 0.5}
        )
    assert result.failed == {"color": "failed: no answer within 0.5s"}
    assert result.reply["color_res"] == [] and result.reply["unified_res"][0]["image_id"] == 2
    assert all(isinstance(v, list) for v in result.reply.values()), "only lists of hits in the reply"

    down = search_with(
        tmp_path, {**services, "color": f"http://127.0.0.1:{free_port()}"}, "similar", query(2)
    )
    assert down.failed["color"].startswith("unavailable: ")
    assert down.reply["unified_res"][0]["image_id"] == 2


def test_duplicates_finds_a_copy_and_says_nothing_for_a_new_picture(
    services: dict[str, str], tmp_path: Path
) -> None:
    found = search_with(tmp_path, services, "duplicates", query(4), duplicate_distance=10)
    assert list(found) == ["duplicate"]
    assert found["duplicate"][0]["image_id"] == 4
    assert all(e["distance"] <= 10 for e in found["duplicate"])
    new = encode(synthetic_image(99, SIZE))
    assert search_with(tmp_path, services, "duplicates", new, duplicate_distance=10) == {}


def test_duplicates_refuse_rather_than_answer_without_phash(services: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(DuplicateSearchUnavailable, match="not enabled"):
        search_with(tmp_path, {"color": services["color"]}, "duplicates", query(1))
    with pytest.raises(DuplicateSearchUnavailable, match="phash could not answer"):
        search_with(tmp_path, {"phash": f"http://127.0.0.1:{free_port()}"}, "duplicates", query(1))


def test_a_stored_images_copies_wait_for_local_features_unless_the_runner_marked_it(
    services: dict[str, str], tmp_path: Path
) -> None:
    """The copies step after an add: local features that do not answer make it try again (a crop
    must not be missed), but not when ``ambience serve`` marked the service unavailable (its
    weights are missing: it will not answer until restarted), then phash's copies stand alone."""
    urls = {**services, "local_features": f"http://127.0.0.1:{free_port()}"}  # nothing listens
    config = GatewaySettings(data_dir=tmp_path / "gateway", services=list(urls), service_urls=urls)
    marks = RunnerMarks(tmp_path / "run", ttl_s=0)

    async def copies_of(image_id: int) -> dict[str, Any]:
        clients = ServiceClients(config, CollectorRegistry())
        try:
            return await ReverseSearch(config, clients, config.enabled(), marks=marks).duplicates_of(image_id)
        finally:
            await clients.close()

    with pytest.raises(DuplicateSearchUnavailable, match="local_features could not answer"):
        asyncio.run(copies_of(3))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "local_features.unavailable").write_text("model weights missing")
    assert asyncio.run(copies_of(3)) == {}  # only itself: the other pictures are no copies


def test_merge_duplicates_adds_local_feature_crops_after_phash_hits() -> None:
    settings = GatewaySettings(duplicate_local_min_inliers=20, result_k=10)
    phash = CallResult("phash", "ok", 200, [{"image_id": 7, "distance": 12}, {"image_id": 3, "distance": 0}])
    local = CallResult(
        "local_features",
        "ok",
        200,
        [
            {"image_id": 3, "distance": 0.1, "matches": 80},
            {"image_id": 9, "distance": 0.2, "matches": 45},
            {"image_id": 5, "distance": 0.3, "matches": 19},  # too few inliers for a duplicate
            {"image_id": 8, "distance": 0.2, "matches": 60},
        ],
    )
    merged = merge_duplicates(phash, local, settings)["duplicate"]
    assert [e["image_id"] for e in merged] == [3, 7, 8, 9]
    assert merged[0] == {"image_id": 3, "distance": 0, "matches": 80}
    assert merged[2] == {"image_id": 8, "distance": None, "matches": 60}

    local_failed = CallResult("local_features", "unavailable", detail="not reachable")
    assert [e["image_id"] for e in merge_duplicates(phash, local_failed, settings)["duplicate"]] == [3, 7]
    assert merge_duplicates(CallResult("phash", "ok", 200, []), None, settings) == {}


def test_merge_rankings_leaves_out_a_reply_that_is_not_a_ranking() -> None:
    settings = GatewaySettings(result_k=2)
    upstreams = [UPSTREAMS["phash"], UPSTREAMS["color"]]
    replies = [
        # FAISS padding (-1) and a repeated id are dropped, the rest cut to result_k.
        CallResult("phash", "ok", 200, [{"image_id": i, "distance": abs(i)} for i in (4, -1, 4, 1, 2)]),
        CallResult("color", "ok", 200, {"error": "not a list"}),
    ]
    merged = merge_rankings(upstreams, replies, settings)
    assert [h["image_id"] for h in merged.reply["phash_res"]] == [4, 1]
    assert merged.reply["color_res"] == []
    assert merged.failed == {"color": "ok: unexpected reply"}
    assert merged.reply["unified_res"][0]["image_id"] == 4

"""Copy-detection recall of every search service and of the fused ranking, through the gateway, and
the fusion settings chosen from the same lists.

The stack runs here (``ambience serve`` in a temporary folder, free ports, the weights of
``bench/weights.py``) unless ``--gateway URL`` names a running one. The originals are added with
``/calculate_all_image_features``; every transformed copy (``ambience_support.transforms.
COPY_DETECTION``) is sent to ``/reverse_search`` (normal mode) and the rank of its source is read
from each service's result list and from ``unified_res``. References (imagehash, PDQ) are evaluated
on the same queries in this process. Each service's mean latency is read from the gateway's own
per-service histogram (``/metrics``), so it is the time the gateway waited for that service inside
the fused search. Then the fusion grid (``fusion_grid.py``) scores every candidate setting on the
lists the services returned: the section ``fusion``. ``--small``: 8 photos, 4 transforms.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from ambience_support.photos import PHOTOS, load_rgb, photo_paths
from ambience_support.stacks import ServeStack, up_services
from ambience_support.transforms import COPY_DETECTION, Transform, encode_query
from bench.copy_recall import fusion_grid
from bench.copy_recall.ranks import Hits, Query, Ranks, markdown_recall
from bench.copy_recall.references import HashIndex, available
from bench.harness import progress, section
from bench.weights import offline_env
from gateway.settings import SEARCH_SERVICES, UPSTREAMS

RESULT_KEYS = {u.name: u.result_key for u in UPSTREAMS.values() if u.result_key}
UNIFIED = "unified_res"
SMALL_TRANSFORMS = ("jpeg_q20", "mirror", "crop_50", "text_banner")
#: the originals are shrunk to this before they are transformed (queries of a phone's size)
MAX_SIDE = 1600
log = progress("copy_recall gateway")


def index_originals(client: httpx.Client, gateway: str, photos: list[Path]) -> dict[str, int]:
    """Add every photo through the gateway; returns failures per service (should be none)."""
    failures: dict[str, int] = {}

    def add(item: tuple[int, Path]) -> list[dict[str, Any]]:
        image_id, path = item
        r = client.post(
            f"{gateway}/calculate_all_image_features",
            files={"image": (path.name, path.read_bytes())},
            data={"image_id": str(image_id)},
        )
        r.raise_for_status()
        body = r.json()
        return body if isinstance(body, list) else body.get("results", [])

    with ThreadPoolExecutor(4) as pool:
        for parts in pool.map(add, enumerate(photos)):
            for part in parts:
                if isinstance(part, dict) and part.get("status") not in (None, "ok"):
                    failures[str(part.get("service"))] = failures.get(str(part.get("service")), 0) + 1
    return failures


_METRIC = re.compile(r'^ambience_gateway_upstream_seconds_(sum|count)\{service="([^"]+)"\}\s+(\S+)$', re.M)


def upstream_seconds(client: httpx.Client, gateway: str) -> dict[str, tuple[float, float]]:
    """(sum of seconds, count) per service from the gateway's latency histogram."""
    text = client.get(f"{gateway}/metrics").text
    out: dict[str, list[float]] = {}
    for kind, service, value in _METRIC.findall(text):
        out.setdefault(service, [0.0, 0.0])[0 if kind == "sum" else 1] = float(value)
    return {s: (v[0], v[1]) for s, v in out.items()}


def evaluate(
    gateway: str,
    photos: list[Path],
    transforms: dict[str, Transform] = COPY_DETECTION,
    progress: Callable[[str], None] = print,
    headers: dict[str, str] | None = None,
    services: list[str] | None = None,
) -> Ranks:
    """Recall of ``services`` (default: every search service) and ``unified_res`` on every photo
    transformed by every transform; the references on the same queries."""
    ranks = Ranks.of(photos)
    refs = {name: HashIndex(fn) for name, fn in available().items()}
    originals = [load_rgb(p, MAX_SIDE) for p in photos]
    for name, ref in refs.items():
        for image_id, img in enumerate(originals):
            ref.add(image_id, img)
        progress(f"reference {name}: hashed {len(originals)} originals")

    ref_seconds: dict[str, list[float]] = {name: [] for name in refs}
    gateway_seconds: list[float] = []
    with httpx.Client(timeout=300, headers=headers) as client:
        started = time.perf_counter()
        failures = index_originals(client, gateway, photos)
        ranks.index_seconds = time.perf_counter() - started
        progress(
            f"indexed {len(photos)} originals through the gateway in {ranks.index_seconds:.1f}s"
            + (f" (failed parts: {failures})" if failures else "")
        )
        before = upstream_seconds(client, gateway)
        for t_name, transform in transforms.items():
            t0 = time.perf_counter()
            for image_id, img in enumerate(originals):
                data = encode_query(transform(img))
                q0 = time.perf_counter()
                r = client.post(
                    f"{gateway}/reverse_search",
                    files={"image": ("q.jpg", data)},
                    data={"find_duplicate": "0"},
                )
                gateway_seconds.append(time.perf_counter() - q0)
                r.raise_for_status()
                reply = r.json()
                failed = reply.get("failed") or {}
                lists: dict[str, Hits] = {}
                for service, key in RESULT_KEYS.items():
                    if services is not None and service not in services:
                        continue
                    if service in failed or not isinstance(reply.get(key), list):
                        continue
                    lists[service] = reply[key]
                if not lists and not failed:
                    continue
                for service, hits in lists.items():
                    ranks.add_hits(service, t_name, image_id, [h["image_id"] for h in hits])
                ranks.add_hits(UNIFIED, t_name, image_id, [hit["image_id"] for hit in reply.get(UNIFIED, [])])
                ranks.queries.append(Query(t_name, image_id, lists))
                decoded = Image.open(io.BytesIO(data)).convert("RGB")
                for name, ref in refs.items():
                    r0 = time.perf_counter()
                    found = ref.search(decoded, 10)
                    ref_seconds[name].append(time.perf_counter() - r0)
                    ranks.add_hits(name, t_name, image_id, found)
            progress(
                f"{t_name}: {len(originals)} queries in {time.perf_counter() - t0:.1f}s, "
                f"unified recall@1 {ranks.recall(UNIFIED, t_name, 1):.2f}"
            )
        after = upstream_seconds(client, gateway)
    for service, (total, count) in after.items():
        t_before, c_before = before.get(service, (0.0, 0.0))
        if count > c_before:
            ranks.seconds[service] = (total - t_before) / (count - c_before)
    ranks.seconds[UNIFIED] = float(np.mean(gateway_seconds)) if gateway_seconds else float("nan")
    for name, values in ref_seconds.items():
        if values:
            ranks.seconds[name] = float(np.mean(values))
    return ranks


def plot_recall(ranks: Ranks, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = ranks.methods()
    transforms = ranks.transforms()
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(transforms)), 4.5))
    x = np.arange(len(transforms))
    for i, m in enumerate(methods):
        values = [ranks.recall(m, t, 1) for t in transforms]
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=m)
    ax.set_xticks(x, transforms, rotation=35, ha="right")
    ax.set_ylabel("recall@1")
    ax.set_ylim(0, 1.05)
    ax.set_title("Copy detection: recall@1 per transform")
    # Beside the bars, not above them: above, it covered the title or the 1.0 bars.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def recall_text(ranks: Ranks, status: dict[str, str], img: str | None) -> str:
    not_up = {s: why for s, why in status.items() if why != "up"}
    lines = [
        f"{ranks.photos} photos indexed through the gateway (`/calculate_all_image_features`, "
        f"{ranks.photos / ranks.index_seconds:.1f} photos/s with every search service); each photo "
        f"transformed {len(ranks.transforms())} ways and sent to `/reverse_search`. Cells: recall@1 / "
        "recall@10 (the source photo, or a byte-identical copy of it, first / in the top 10). "
        "Service latency is the mean time the gateway waited for that service inside the fused search "
        "(its own histogram); `unified_res` latency is the whole `/reverse_search` as the client sees it; "
        "references: hash of query + mirrored query and exhaustive Hamming scan, in this process.",
        "",
        markdown_recall(ranks),
    ]
    if img:
        lines += ["", f"![recall@1 per transform]({img})"]
    if not_up:
        lines += ["", "Not evaluated in this run:"]
        lines += [f"- {s}: {why}" for s, why in not_up.items()]
    return "\n".join(lines)


def fusion_text(ranks: Ranks, services: list[str]) -> str:
    log("fusion: scoring candidate settings")
    started = time.perf_counter()
    scores, baseline = fusion_grid.search(ranks, services)
    log(f"fusion: {len(scores)} candidates scored in {time.perf_counter() - started:.0f}s")
    chosen = fusion_grid.recommend(scores, baseline)
    verdict = (
        "The current gateway defaults stay: no candidate beat them on the selection half without "
        "losing on the held-out half."
        if chosen is None
        else f"Recommended (beats the current default on the selection half, not worse held out): "
        f"**{chosen.candidate.label()}**."
    )
    return (
        "Offline grid over the per-service lists of every query above, fused as the gateway "
        "fuses them (weights relative to phash, constant c, phash distance gate, relative gate of "
        "colour and phash: ratio to the median distance of their own list; scored with numpy, and "
        "every row shown here checked query by query against "
        "`gateway.fusion.reciprocal_rank_fusion`).\n\n"
        + fusion_grid.markdown(scores, baseline)
        + "\n\n"
        + verdict
    )


def run(args: argparse.Namespace) -> str:
    photos = photo_paths(PHOTOS, args.max_photos or (8 if args.small else None))
    if not photos:
        raise SystemExit(f"no photos in {PHOTOS} (set AMBIENCE_TEST_PHOTOS)")
    names = (
        args.transforms.split(",")
        if args.transforms
        else list(SMALL_TRANSFORMS if args.small else COPY_DETECTION)
    )
    transforms = {n: COPY_DETECTION[n] for n in names}
    headers = {"X-API-Key": args.api_key} if args.api_key else None
    with tempfile.TemporaryDirectory(prefix="ambience-copy-recall-") as tmp:
        stack = None
        if args.gateway:
            gateway = args.gateway.rstrip("/")
            health = httpx.get(gateway + "/health", timeout=30).json()
        else:
            log("starting the stack (ambience serve)")
            stack = ServeStack(Path(tmp) / "data", offline_env(Path(tmp), log))
            health = stack.start()
            gateway = stack.url
        try:
            status = {s: why for s, why in up_services(health).items() if s in SEARCH_SERVICES}
            log(f"services: {json.dumps(status)}")
            up = [s for s, why in status.items() if why == "up"]
            ranks = evaluate(gateway, photos, transforms, log, headers, up)
        finally:
            if stack is not None:
                stack.stop()
    img = None
    if args.plots:
        plot_recall(ranks, args.plots / "recall_per_transform.png")
        img = f"{args.plots_link}/recall_per_transform.png"
    return (
        recall_text(ranks, status, img)
        + "\n\n"
        + section("fusion", "Fusion settings (gateway defaults)")
        + "\n"
        + fusion_text(ranks, up)
    )

"""Web page: time to first render of the moments page and the map, measured in the browser.

Setup per collection size: synthetic rows with the statistics of real EfficientNet-Lite0 embeddings
of ``../shared/caltech101-dev`` (the explore bench's embeddings and bench.vectors'
generator) written straight into a global_features service's store (random Lite0 weights: the
service extracts nothing here, it only clusters and lays out stored rows), one generated WebP
preview per image in the gateway's thumbnail table, then the service and the gateway as processes
with an embedded PostgreSQL. Debian's Chromium (Playwright) opens each view in a fresh browser
context and the clock runs from navigation to the first ``.moment`` card visible (moments,
granularity 0.3, k-means) or to ``#map-canvas[data-points]`` set (map, points drawn):

- **cold**: the first request starts the computation in the service; the page polls its 202s. The
  map's colours are the moments at granularity 0.3, which the cold moments run has just cached, so
  the map's cold time is its layout (landmark t-SNE) plus the transfer and drawing.
- **warm**: the same view again, the service's result cached.

Peak memory of the browser: the JS heap the page uses (``performance.memory``, precise) and the
summed resident memory of every Chromium process, sampled every 0.2 s during the run.

    python -m bench.page_bench [--small] [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import psycopg2
from psycopg2.extras import execute_values

from ambience_support.browser import chromium_path
from ambience_support.images import encode, synthetic_image
from ambience_support.pg import TestServer, start_test_server
from ambience_support.stacks import GatewayStack, start_stack
from bench.explore_bench import CALTECH, caltech_embeddings
from bench.timing import machine
from bench.vectors import synthetic
from gateway.thumbnails import make_thumbnail
from services.registry import open_feature

SERVICE = "global_features"
MODEL = "tf_efficientnet_lite0"
#: The service runs with random Lite0 weights (1280-d like the real ones): it only reads stored rows.
SERVICE_ENV = {
    "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
    "AMBIENCE_GLOBAL_FEATURES_MODEL": MODEL,
    "AMBIENCE_GLOBAL_FEATURES_WEIGHTS": "random",
}
WAIT_MS = 600_000  # the page itself gives up polling after 600 attempts a second apart
CHUNK = 10_000
MOMENTS_PAGE = 300  # app.js MOMENTS_PAGE


def progress(message: str) -> None:
    print(f"[page_bench] {message}", file=sys.stderr, flush=True)


def fill_store(data_dir: Path, rows: np.ndarray) -> None:
    """Rows 1..N into the service's own store, the way the service opens it; the index snapshot
    written at close lets the service start without re-reading every row into FAISS."""
    with open_feature(SERVICE, data_dir, model=MODEL, weights="random") as opened:
        for lo in range(0, len(rows), CHUNK):
            block = rows[lo : lo + CHUNK]
            opened.store.add_many((lo + 1 + i, row.tobytes()) for i, row in enumerate(block))
            opened.collection.sync()  # the index follows the store's log
            progress(f"store: {lo + len(block):,}/{len(rows):,} rows")


def fill_thumbnails(dsn: str, size: int) -> int:
    """One generated preview, stored under every id (a bulk INSERT: the page only fetches them)."""
    webp = make_thumbnail(encode(synthetic_image(1, (400, 300))))
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            for lo in range(1, size + 1, CHUNK):
                ids = range(lo, min(lo + CHUNK, size + 1))
                execute_values(
                    cur,
                    "INSERT INTO gateway_thumbnails (image_id, webp, etag) VALUES %s",
                    [(i, webp, "bench") for i in ids],
                    page_size=1000,
                )
    finally:
        conn.close()
    return len(webp)


class RssSampler:
    """Peak summed RSS of the Chromium processes below this one, sampled in a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            total = 0
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "chrom" in child.name():
                        total += child.memory_info().rss
            self.peak = max(self.peak, total)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(chromium: Any, url: str, view: str) -> dict[str, Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        with RssSampler() as rss:
            started = time.perf_counter()
            if view == "moments":
                page.goto(url + "/#/moments?g=0.3&method=kmeans")
                page.wait_for_selector("#moments .moment", state="visible", timeout=WAIT_MS)
            else:
                page.goto(url + "/#/map")
                page.wait_for_selector("#map-canvas[data-points]", state="attached", timeout=WAIT_MS)
            seconds = time.perf_counter() - started
            out: dict[str, Any] = {"seconds": seconds}
            if view == "moments":
                out["total"] = page.text_content("#moment-count")
                out["cards"] = page.locator("#moments .moment").count()
                if page.locator("#moments-more").is_visible():
                    before = out["cards"]
                    clicked = time.perf_counter()
                    page.click("#moments-more")
                    page.wait_for_function(
                        f"document.querySelectorAll('#moments .moment').length > {before}", timeout=60_000
                    )
                    out["more_ms"] = (time.perf_counter() - clicked) * 1000
                    out["cards_after_more"] = page.locator("#moments .moment").count()
            else:
                out["points"] = int(page.get_attribute("#map-canvas", "data-points") or 0)
            page.wait_for_timeout(500)  # let the thumbnails in view load before the memory reading
            out["heap_mib"] = page.evaluate("performance.memory.usedJSHeapSize") / 2**20
        out["rss_mib"] = rss.peak / 2**20
        out["errors"] = errors
        return out
    finally:
        context.close()


def bench_size(chromium: Any, server: TestServer, size: int, real: np.ndarray) -> list[str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="page-bench-") as tmp_name:
        tmp = Path(tmp_name)
        fill_store(tmp / SERVICE, synthetic(real, np.random.default_rng(size))(size))
        started = time.perf_counter()
        stack = start_stack(tmp, server, [SERVICE])
        progress(f"stack up in {time.perf_counter() - started:.0f} s")
        try:
            lines += measure_stack(chromium, stack, size)
        finally:
            stack.stop()
    return lines


def measure_stack(chromium: Any, stack: GatewayStack, size: int) -> list[str]:
    lines: list[str] = []
    webp_bytes = fill_thumbnails(stack.dsn, size)
    progress(f"{size:,} thumbnails of {webp_bytes} B stored")
    for state in ("cold", "warm"):
        for view in ("moments", "map"):
            r = measure(chromium, stack.url, view)
            progress(f"{size:,} {view} {state}: {r['seconds']:.1f} s")
            if view == "moments":
                shown = f"{r['total']}, {r['cards']} cards"
                if "more_ms" in r:
                    shown += f"; Show more: {r['cards_after_more']} cards in {r['more_ms']:.0f} ms"
            else:
                shown = f"{r['points']:,} points drawn"
            if r["errors"]:
                shown += f"; script errors: {'; '.join(r['errors'])[:200]}"
            lines.append(
                f"| {size:,} | {view} | {state} | {r['seconds']:.2f} | {shown} | "
                f"{r['heap_mib']:.0f} | {r['rss_mib']:,.0f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="one collection of 1,000 images (smoke test)")
    parser.add_argument("--sizes", default="", help="comma list of collection sizes (default 10000,100000)")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("1000" if args.small else "10000,100000")).split(",")]
    print(f"Machine: {machine()}.\n")
    chromium_binary = chromium_path()
    if not CALTECH.is_dir():
        print(f"**Not measured**: {CALTECH} not found.")
        return
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("**Not measured**: Playwright is not installed (it is in the test extra).")
        return
    if chromium_binary is None:
        print("**Not measured**: no Chromium (apt-get install chromium).")
        return
    started = time.perf_counter()
    real, _ = caltech_embeddings(2 if args.small else 5, 10 if args.small else None)
    progress(f"{len(real)} caltech images embedded in {time.perf_counter() - started:.0f} s")
    os.environ.update(SERVICE_ENV)  # the service processes inherit it
    print(
        f"Synthetic rows like {len(real)} EfficientNet-Lite0 embeddings of Caltech-101 pictures, in a "
        f"{SERVICE} service; one generated WebP preview per image. Seconds from navigation to the "
        "first moment card visible / the map's points drawn; cold = the service computes on the "
        f"first request (the page polls), warm = cached. Moments render {MOMENTS_PAGE} cards, then "
        'a page per "Show more". Heap: the page\'s JS heap after the render; RSS: peak of all '
        "Chromium processes during the run.\n"
    )
    print("| images | view | state | seconds to first render | shown | JS heap (MiB) | Chromium RSS (MiB) |")
    print("|---|---|---|---|---|---|---|")
    with contextlib.contextmanager(start_test_server)() as server, sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=chromium_binary,
            args=["--no-sandbox", "--disable-gpu", "--enable-precise-memory-info"],
        )
        try:
            for size in sizes:
                started = time.perf_counter()
                for line in bench_size(chromium, server, size, real):
                    print(line, flush=True)
                progress(f"{size:,} images done in {time.perf_counter() - started:.0f} s")
        finally:
            chromium.close()


if __name__ == "__main__":
    main()

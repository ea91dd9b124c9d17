"""Hostile-image memory: peak RSS of each service answering the worst-case 100 MP images.

    python -m bench.hostile_memory_bench [--services phash,color,...] [--small]

Every service runs as a real process (models tiny, random weights: what is measured is the decode
path, the same for real weights); each image is sent once to its image route and the process's
peak resident memory (VmHWM from /proc, reset before each image) is read. The images are generated
in code: 10000x10000 PNGs in 16-bit grey, RGBA and 1-bit, a few hundred KiB each. ``--small``:
phash and color only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from ambience_support.hostile import SPECS, image_route, service_env
from ambience_support.hostile_images import big_png
from ambience_support.memory import peak_rss_mb, reset_peak_rss
from ambience_support.memory import rss_mb as current_rss_mb
from ambience_support.pg import start_test_server
from ambience_support.processes import ServiceProcess
from ambience_support.tiny_models import write_label_files
from services.common.descriptor import ServiceDescriptor

#: Smallest decode first: memory the allocator keeps after one image then never inflates the next.
KINDS = {"bilevel": "1-bit", "gray16": "16-bit grey", "rgba": "RGBA"}
SMALL = ["phash", "color"]


def route_of(spec: ServiceDescriptor) -> tuple[str, dict[str, str]]:
    if spec.search:
        return f"/{spec.search}_get_similar_images_by_image_buffer", {"k": "1"}
    route = image_route(spec)
    assert route is not None
    return route, {}


def measure(proc: ServiceProcess, spec: ServiceDescriptor, images: dict[str, bytes]) -> dict[str, object]:
    assert proc.proc is not None
    pid = proc.proc.pid
    route, fields = route_of(spec)
    row: dict[str, object] = {"idle": current_rss_mb(pid)}
    with httpx.Client(base_url=proc.url, timeout=600) as client:
        for kind, data in images.items():
            reset_peak_rss(pid)
            started = time.perf_counter()
            reply = client.post(route, files={"image": ("big.png", data)}, data=fields)
            seconds = time.perf_counter() - started
            row[kind] = (peak_rss_mb(pid), reply.status_code, seconds)
            print(f"{spec.name} {kind}: {reply.status_code} {row[kind]}", file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", default=",".join(s.name for s in SPECS))
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    names = SMALL if args.small else args.services.split(",")
    specs = [s for s in SPECS if s.name in names]
    print("generating the images", file=sys.stderr)
    images = {kind: big_png(kind) for kind in KINDS}
    pg = start_test_server()
    server = next(pg)
    tmp = Path(tempfile.mkdtemp(prefix="ambience-hostile-bench-"))
    write_label_files(tmp / "models" / "tagger")
    dsn = server.new_database("hostile_bench")
    procs = {
        s.name: ServiceProcess(s.module, s.env_prefix, tmp / s.name, service_env(s, tmp / "models", dsn))
        for s in specs
    }
    rows: dict[str, dict[str, object]] = {}
    try:
        with ThreadPoolExecutor(len(procs)) as pool:
            list(pool.map(lambda p: p.start(timeout=300), procs.values()))
        for spec in specs:  # one at a time: each figure is one service's own peak
            rows[spec.name] = measure(procs[spec.name], spec, images)
    finally:
        for proc in procs.values():
            proc.stop()
        pg.close()
    sizes = ", ".join(f"{KINDS[k]} {len(v) >> 10} KiB" for k, v in images.items())
    print(f"Each image 10000x10000 (100 MP, the default pixel limit); compressed sizes: {sizes}.")
    print("Peak RSS in MB of the service process while it answers one image (VmHWM, reset before each),")
    print("with the reply status and seconds; idle: RSS before the first image.\n")
    print(
        "| service | idle MB | "
        + " | ".join(f"{label} peak MB (status, s)" for label in KINDS.values())
        + " |"
    )
    print("|---|---:|" + "---:|" * len(KINDS))
    for name, row in rows.items():
        cells = []
        for kind in KINDS:
            peak, status, seconds = row[kind]  # type: ignore[misc]
            cells.append(f"{peak:.0f} ({status}, {seconds:.1f})")
        print(f"| {name} | {row['idle']:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

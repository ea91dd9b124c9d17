"""Images/s of ``ambience import phash`` (--jobs 1, --jobs 2) versus adding over HTTP.

Reference, measured in the same run: a phash service process fed the same files over HTTP, one
upload at a time and with 2 concurrent uploads (the service is already running and warmed up;
its start-up is not counted). The import is timed as a user runs it: the whole ``ambience import``
command, interpreter and worker start-up included; the rate the command reports itself (from its
start to its end, without the Python start-up) is printed too.

Two measures: images per wall-clock second, and images per CPU-second summed over every process
involved (service + client; import + its worker processes). The second does not depend on what
else the machine runs, so it stays comparable on shared or overloaded cores.

    python -m bench.import_bench [--folder ../shared/photos-full] [--copies 4] [--repeats 2]

The folder's photos are linked ``--copies`` times under different names (each copy is decoded
and hashed again), so the run is long enough to time.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from ambience_support.photos import PHOTOS_FULL, REPO, photo_paths
from ambience_support.processes import ServiceProcess, ambience_command
from bench.timing import machine


def link_copies(photos: list[Path], copies: int, folder: Path) -> list[Path]:
    files = []
    for c in range(copies):
        for i, photo in enumerate(photos):
            link = folder / f"{1 + c * len(photos) + i}{photo.suffix.lower()}"
            link.symlink_to(photo.resolve())
            files.append(link)
    return files


@dataclass
class Measured:
    images_per_s: float  # wall clock
    images_per_cpu_s: float  # every process involved: service + client, or import + its workers
    reported: float | None = None  # the rate the import command reports for itself


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def http_rate(files: list[Path], work: Path, concurrency: int) -> Measured:
    """POST /calculate_phash_features against a running service."""
    data_dir = work / f"http-{concurrency}-{time.monotonic_ns()}" / "phash"
    data_dir.parent.mkdir(parents=True)
    service = ServiceProcess("services.phash", "AMBIENCE_PHASH_", data_dir).start()
    assert service.proc is not None
    try:
        with httpx.Client(base_url=service.url, timeout=120) as client:

            def add(item: tuple[int, Path]) -> None:
                image_id, path = item
                r = client.post(
                    "/calculate_phash_features",
                    files={"image": (path.name, path.read_bytes())},
                    data={"image_id": str(image_id)},
                )
                r.raise_for_status()

            items = [(int(p.stem), p) for p in files]
            add(items[0])  # warm-up (numba loads its cached code on the first hash), not timed
            items = items[1:]
            started, cpu = time.perf_counter(), time.process_time() + proc_cpu_s(service.proc.pid)
            if concurrency == 1:
                for item in items:
                    add(item)
            else:
                with ThreadPoolExecutor(concurrency) as pool:
                    list(pool.map(add, items))
            wall = time.perf_counter() - started
            cpu = time.process_time() + proc_cpu_s(service.proc.pid) - cpu
            return Measured(len(items) / wall, len(items) / cpu)
    finally:
        service.stop()


def import_rate(folder: Path, n_files: int, work: Path, jobs: int) -> Measured:
    """The whole ``ambience import`` command, interpreter and worker start-up included."""
    data_root = work / f"import-{jobs}-{time.monotonic_ns()}"
    cmd = ambience_command("import", "phash", str(folder), "--ids-from-filenames", "--no-progress")
    cmd += ["--jobs", str(jobs), "--data-dir", str(data_root)]
    started, cpu = time.perf_counter(), children_cpu_s()
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - started, children_cpu_s() - cpu  # workers included: reaped
    if result.returncode != 0:
        raise SystemExit(f"import failed ({result.returncode}):\n{result.stderr}")
    added = int(re.search(r"added\s+(\d+)", result.stderr).group(1))  # type: ignore[union-attr]
    assert added == n_files, result.stderr
    reported = float(re.search(r"([\d.]+) images/s", result.stderr).group(1))  # type: ignore[union-attr]
    return Measured(n_files / wall, n_files / cpu, reported)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=PHOTOS_FULL)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per variant")
    parser.add_argument("--small", action="store_true", help="4 photos, 1 copy, 1 run (smoke test)")
    args = parser.parse_args()
    photos = photo_paths(args.folder, limit=4 if args.small else None)
    if args.small:
        args.copies, args.repeats = 1, 1
    if not photos:
        raise SystemExit(f"no photos in {args.folder}")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ambience-import-bench-") as tmp:
        work = Path(tmp)
        folder = work / "photos"
        folder.mkdir()
        files = link_copies(photos, args.copies, folder)
        size_mb = sum(p.stat().st_size for p in photos) * args.copies / 1e6
        rows: dict[str, Measured] = {}
        for concurrency in (1, 2):
            runs = [http_rate(files, work, concurrency) for _ in range(args.repeats)]
            rows[f"HTTP, {concurrency} concurrent upload(s)"] = max(runs, key=lambda m: m.images_per_s)
        for jobs in (1, 2):
            runs = [import_rate(folder, len(files), work, jobs) for _ in range(args.repeats)]
            rows[f"ambience import --jobs {jobs}"] = max(runs, key=lambda m: m.images_per_s)
    print(
        f"{len(files)} files ({len(photos)} photos x {args.copies}, {size_mb:.0f} MB), best of "
        f"{args.repeats}; {machine()}, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    ref = rows["HTTP, 1 concurrent upload(s)"]
    print(
        "\n| path | images/s (wall) | vs HTTP x1 | images per CPU-s | vs HTTP x1 | rate the import reports |"
    )
    print("|---|---|---|---|---|---|")
    for name, m in rows.items():
        extra = f"{m.reported:.1f} images/s" if m.reported is not None else "–"
        print(
            f"| {name} | {m.images_per_s:.1f} | {m.images_per_s / ref.images_per_s:.2f}x "
            f"| {m.images_per_cpu_s:.1f} | {m.images_per_cpu_s / ref.images_per_cpu_s:.2f}x | {extra} |"
        )


if __name__ == "__main__":
    main()

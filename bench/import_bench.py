"""Images/s of ``ambience import phash`` (--jobs 1, --jobs 2) versus adding over HTTP.

Reference, measured in the same run: a phash service process fed the same files over HTTP, one
upload at a time and with 2 concurrent uploads (the service is already running; its start-up is
not counted). The import is timed as a user runs it: the whole ``ambience import`` command,
interpreter and worker start-up included; the rate the command reports itself (from its start to
its end, without the Python start-up) is printed too.

    python -m bench.import_bench [--folder ../shared/photos-full] [--copies 4] [--repeats 2]

The folder's photos are linked ``--copies`` times under different names (each copy is decoded
and hashed again), so the run is long enough to time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.timing import machine
from tests.helpers import PHOTOS_FULL, REPO, ServiceProcess, photo_paths


def link_copies(photos: list[Path], copies: int, folder: Path) -> list[Path]:
    files = []
    for c in range(copies):
        for i, photo in enumerate(photos):
            link = folder / f"{1 + c * len(photos) + i}{photo.suffix.lower()}"
            link.symlink_to(photo.resolve())
            files.append(link)
    return files


def http_rate(files: list[Path], work: Path, concurrency: int) -> float:
    """Images/s of POST /calculate_phash_features against a running service."""
    data_dir = work / f"http-{concurrency}-{time.monotonic_ns()}" / "phash"
    data_dir.parent.mkdir(parents=True)
    service = ServiceProcess("services.phash", "AMBIENCE_PHASH_", data_dir).start()
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
            started = time.perf_counter()
            if concurrency == 1:
                for item in items:
                    add(item)
            else:
                with ThreadPoolExecutor(concurrency) as pool:
                    list(pool.map(add, items))
            return len(files) / (time.perf_counter() - started)
    finally:
        service.stop()


def import_rate(folder: Path, n_files: int, work: Path, jobs: int) -> tuple[float, float]:
    """(images/s of the whole command, images/s the command reports for itself)."""
    data_root = work / f"import-{jobs}-{time.monotonic_ns()}"
    cmd = [
        sys.executable,
        "-m",
        "gateway.cli",
        "import",
        "phash",
        str(folder),
        "--ids-from-filenames",
        "--jobs",
        str(jobs),
        "--no-progress",
        "--data-dir",
        str(data_root),
    ]
    started = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"import failed ({result.returncode}):\n{result.stderr}")
    added = int(re.search(r"added\s+(\d+)", result.stderr).group(1))  # type: ignore[union-attr]
    assert added == n_files, result.stderr
    reported = float(re.search(r"([\d.]+) images/s", result.stderr).group(1))  # type: ignore[union-attr]
    return n_files / wall, reported


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=PHOTOS_FULL)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per variant")
    args = parser.parse_args()
    photos = photo_paths(args.folder)
    if not photos:
        raise SystemExit(f"no photos in {args.folder}")
    with tempfile.TemporaryDirectory(prefix="ambience-import-bench-") as tmp:
        work = Path(tmp)
        folder = work / "photos"
        folder.mkdir()
        files = link_copies(photos, args.copies, folder)
        size_mb = sum(p.stat().st_size for p in photos) * args.copies / 1e6
        print(
            f"{len(files)} files ({len(photos)} photos x {args.copies}, {size_mb:.0f} MB), "
            f"best of {args.repeats}; {machine()}, load average {os.getloadavg()[0]:.1f}"
        )
        rows: dict[str, float] = {}
        reported: dict[str, float] = {}
        for concurrency in (1, 2):
            rows[f"HTTP, {concurrency} concurrent upload(s)"] = max(
                http_rate(files, work, concurrency) for _ in range(args.repeats)
            )
        for jobs in (1, 2):
            runs = [import_rate(folder, len(files), work, jobs) for _ in range(args.repeats)]
            best = max(runs)
            rows[f"ambience import --jobs {jobs}"] = best[0]
            reported[f"ambience import --jobs {jobs}"] = best[1]
    reference = rows["HTTP, 1 concurrent upload(s)"]
    print(f"{'path':<34} {'images/s':>9} {'vs HTTP x1':>11}   (rate the import reports itself)")
    for name, rate in rows.items():
        extra = f"   ({reported[name]:.1f} images/s)" if name in reported else ""
        print(f"{name:<34} {rate:>9.1f} {rate / reference:>10.2f}x{extra}")


if __name__ == "__main__":
    main()

"""The per-service benchmark scripts, listed in :data:`BENCHES` and run generically.

Convention for a script ``bench/<subject>_bench.py``: runnable as ``python -m bench.<subject>_bench``,
it takes ``--small`` (a run of well under a minute, for the smoke test) and prints its results as
markdown on stdout (progress goes to stderr). Photos come from ``AMBIENCE_TEST_PHOTOS`` /
``AMBIENCE_TEST_PHOTOS_FULL``. The first line of its docstring is its section heading. A new script
is added to :data:`BENCHES`.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
#: Every benchmark script ``python -m bench.evaluate`` runs, in the order it runs them.
BENCHES = (
    "caltech_bench",
    "caption_tag_bench",
    "decode_bench",
    "duplicate_groups_bench",
    "duplicate_pages_bench",
    "explore_bench",
    "faces_bench",
    "gateway_bench",
    "global_features_photos_bench",
    "hostile_memory_bench",
    "import_bench",
    "inference_bench",
    "link_log_bench",
    "local_features_bench",
    "local_features_recall_bench",
    "model_choices_bench",
    "model_throughput_bench",
    "ocr_bench",
    "page_bench",
    "places_bench",
    "phash_color_bench",
    "scaleout_bench",
    "vector_search_bench",
)


@dataclass
class BenchRun:
    module: str
    title: str
    markdown: str
    seconds: float
    ok: bool


def unlisted() -> list[str]:
    """``bench/*_bench.py`` scripts missing from :data:`BENCHES` (this command does not run them)."""
    return sorted(p.stem for p in BENCH.glob("*_bench.py") if p.stem not in BENCHES)


def title(module: str) -> str:
    """A bench script's section heading: the first line of its docstring."""
    source = (BENCH / f"{module}.py").read_text()
    doc = ast.get_docstring(ast.parse(source)) or module
    return doc.strip().splitlines()[0].split(": ")[0].rstrip(".")


def listed() -> dict[str, str]:
    """bench module name -> title, for every script in :data:`BENCHES`."""
    return {module: title(module) for module in BENCHES}


def block_key(module: str, args: list[str]) -> str:
    """The report block of a bench run: one per module and argument list, so a run with other
    arguments (a larger collection, say) has a block of its own beside the default one."""
    return f"bench.{module}" + (f" {' '.join(args)}" if args else "")


def run(
    module: str,
    title: str,
    small: bool,
    photos: Path,
    photos_full: Path,
    timeout: float,
    args: list[str] | None = None,
) -> BenchRun:
    env = {
        **os.environ,
        "AMBIENCE_TEST_PHOTOS": str(photos),
        "AMBIENCE_TEST_PHOTOS_FULL": str(photos_full),
    }
    env.pop("AMBIENCE_PG_DSN", None)  # each script starts its own embedded server
    cmd = [sys.executable, "-m", f"bench.{module}", *(["--small"] if small else []), *(args or [])]
    shown = "python " + " ".join(cmd[1:])
    started = time.perf_counter()
    # stdout is the report; stderr is the script's progress, passed through line by line (a long
    # bench shows where it is) and kept for the report if the script fails.
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr_lines: list[str] = []

    def forward() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr_lines.append(line)
            print(f"  [{module}] {line.rstrip()}", file=sys.stderr, flush=True)

    forwarder = threading.Thread(target=forward, daemon=True)
    forwarder.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read().strip()
        proc.wait()
    finally:
        timer.cancel()
    forwarder.join(5)
    ok = proc.returncode == 0 and not timed_out.is_set()
    if timed_out.is_set():
        out = f"**Not measured in this run**: `{shown}` ran over {timeout:.0f} s."
    elif not ok:
        tail = "".join(stderr_lines).strip()[-1500:]
        out = f"**Not measured in this run**: `{shown}` exited with {proc.returncode}:\n\n```\n{tail}\n```"
    seconds = time.perf_counter() - started
    return BenchRun(module, title, f"Command: `{shown}` ({seconds:.0f} s).\n\n{out}", seconds, ok)

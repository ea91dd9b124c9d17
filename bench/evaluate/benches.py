"""The per-service benchmark scripts, found and run generically.

Convention for a script ``bench/<name>.py``: runnable as ``python -m bench.<name>``, it takes
``--small`` (a run of well under a minute, for the smoke test) and prints its results as markdown on
stdout (progress goes to stderr). Photos come from ``AMBIENCE_TEST_PHOTOS`` /
``AMBIENCE_TEST_PHOTOS_FULL``. The first line of its docstring is its section heading.
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
NOT_BENCHES = {"__init__", "timing"}


@dataclass
class BenchRun:
    module: str
    title: str
    markdown: str
    seconds: float
    ok: bool


def not_following() -> list[str]:
    """bench scripts that do not follow the convention (no ``--small``): this command skips them."""
    return sorted(
        p.stem
        for p in BENCH.glob("*.py")
        if p.stem not in NOT_BENCHES and not p.stem.startswith("_") and p.stem not in discover()
    )


def discover() -> dict[str, str]:
    """bench module name -> title, for every script following the convention."""
    found = {}
    for path in sorted(BENCH.glob("*.py")):
        if path.stem in NOT_BENCHES or path.stem.startswith("_"):
            continue
        source = path.read_text()
        if "--small" not in source or "__main__" not in source:
            continue
        doc = ast.get_docstring(ast.parse(source)) or path.stem
        found[path.stem] = doc.strip().splitlines()[0].split(": ")[0].rstrip(".")
    return found


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

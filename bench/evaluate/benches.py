"""The benchmark scripts, listed in :data:`BENCHES` and run generically.

Convention for a script ``bench/<subject>_bench.py``: runnable as ``python -m bench.<subject>_bench``,
it takes ``--small`` (a run of well under a minute, for the smoke test) and prints its results as
markdown on stdout (progress goes to stderr). Photos come from ``AMBIENCE_TEST_PHOTOS`` /
``AMBIENCE_TEST_PHOTOS_FULL``. The first line of its docstring is its section heading. A harness
(``bench/harness.py``: a literal ``PARTS``, part -> heading) is run once per part, ``--parts NAME``,
each run a block of its own. A new script is added to :data:`BENCHES`. The other modules directly
under ``bench/`` are the machinery the scripts share (:data:`SHARED`).
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

from bench.harness import parts_of, split_sections

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
#: Every benchmark script ``python -m bench.evaluate`` runs, in the order it runs them.
BENCHES = (
    "copy_recall_bench",
    "scale_bench",
    "caltech_bench",
    "decode_bench",
    "duplicate_groups_bench",
    "duplicate_pages_bench",
    "explore_bench",
    "faces_bench",
    "gateway_bench",
    "hostile_memory_bench",
    "import_bench",
    "index_bench",
    "library_bench",
    "link_log_bench",
    "local_features_bench",
    "model_speed_bench",
    "ocr_bench",
    "page_bench",
    "places_bench",
    "phash_color_bench",
    "scaleout_bench",
)
#: Modules under ``bench/`` that are no script: what the scripts share.
SHARED = ("harness", "timing", "vectors", "weights")


@dataclass(frozen=True)
class Run:
    """One process of a benchmark script: a whole script, or one part of a harness."""

    module: str
    part: str | None
    title: str

    @property
    def name(self) -> str:
        return self.module + (f".{self.part}" if self.part else "")

    def key(self, args: list[str], section: str | None = None) -> str:
        """The report block: one per run (or section of it) and argument list, so a run with other
        arguments (a larger collection, say) has a block of its own beside the default one."""
        name = f"{self.module}.{section}" if section else self.name
        return f"bench.{name}" + (f" {' '.join(args)}" if args else "")


@dataclass
class BenchRun:
    run: Run
    #: (key suffix or None for the run's own block, heading, markdown)
    blocks: list[tuple[str | None, str, str]]
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


def runs(module: str) -> list[Run]:
    """The runs of one script: one per part of a harness, else the script once."""
    parts = parts_of(module)
    if parts is None:
        return [Run(module, None, title(module))]
    return [Run(module, part, heading) for part, heading in parts.items()]


def every_run() -> list[Run]:
    return [r for module in BENCHES for r in runs(module)]


def run(
    bench: Run,
    small: bool,
    photos: Path,
    photos_full: Path,
    timeout: float | None,
    args: list[str] | None = None,
    plots: tuple[Path, str] | None = None,
) -> BenchRun:
    """Run ``bench`` as a user would (``args`` appended), in a process of its own; ``plots``: the folder
    a harness draws into and the path the report links it by. A harness part's markdown may hold
    further blocks (``bench.harness.section``)."""
    env = {
        **os.environ,
        "AMBIENCE_TEST_PHOTOS": str(photos),
        "AMBIENCE_TEST_PHOTOS_FULL": str(photos_full),
    }
    env.pop("AMBIENCE_PG_DSN", None)  # each script starts its own embedded server
    shown = [
        "-m",
        f"bench.{bench.module}",
        *(["--small"] if small else []),
        *(["--parts", bench.part] if bench.part else []),
        *(args or []),
    ]
    # Where the plots go is no part of what was measured: the command shown leaves it out.
    drawn = ["--plots", str(plots[0]), "--plots-link", plots[1]] if plots and bench.part else []
    command = "python " + " ".join(shown)
    started = time.perf_counter()
    # stdout is the report; stderr is the script's progress, passed through line by line (a long
    # bench shows where it is) and kept for the report if the script fails.
    proc = subprocess.Popen(
        [sys.executable, *shown, *drawn],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr_lines: list[str] = []

    def forward() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr_lines.append(line)
            print(f"  [{bench.name}] {line.rstrip()}", file=sys.stderr, flush=True)

    forwarder = threading.Thread(target=forward, daemon=True)
    forwarder.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer:
        timer.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read().strip()
        proc.wait()
    finally:
        if timer:
            timer.cancel()
    forwarder.join(5)
    ok = proc.returncode == 0 and not timed_out.is_set()
    if timed_out.is_set():
        out = f"**Not measured in this run**: `{command}` ran over {timeout:.0f} s."
    elif not ok:
        tail = "".join(stderr_lines).strip()[-1500:]
        out = f"**Not measured in this run**: `{command}` exited with {proc.returncode}:\n\n```\n{tail}\n```"
    seconds = time.perf_counter() - started
    head = f"Command: `{command}` ({seconds:.0f} s).\n\n"
    blocks = [
        (key or None, heading, head + text) for key, heading, text in split_sections(out, "", bench.title)
    ]
    return BenchRun(bench, blocks, seconds, ok)

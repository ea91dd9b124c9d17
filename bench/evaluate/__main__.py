"""One command for retrieval quality and speed of every service, the fused search and the
per-service benchmarks; it regenerates the generated blocks of docs/benchmarks.md.

    python -m bench.evaluate [--photos DIR] [--gateway URL] [--small] [--doc docs/benchmarks.md]
    python -m bench.evaluate --parts benches --benches local_features_bench \
        --bench-args "local_features_bench=--images 10000"    # one block, other arguments

It runs every script of ``bench/evaluate/benches.py`` (a harness once per part), each in a process
of its own, and writes each run's markdown into its block. ``--parts`` picks among them: retrieval
(``copy_recall_bench``'s gateway part: copy detection through a stack it starts, or ``--gateway``,
and the fusion grid), scale (``scale_bench``'s services part: cost versus collection size), benches
(every other run); the options of those two parts are passed on to them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.evaluate import benches, report
from bench.evaluate.benches import Run

REPO = Path(__file__).resolve().parents[2]
PARTS = ("retrieval", "scale", "benches")
#: evaluate's part -> the run it names (every other run is part "benches")
NAMED = {"retrieval": ("copy_recall_bench", "gateway"), "scale": ("scale_bench", "services")}


def default_folder(name: str, env: str) -> Path:
    """$env, else the first ``shared/<name>`` beside the repository or one of its parents (a
    worktree under /work/wt/x finds /work/shared)."""
    if os.environ.get(env):
        return Path(os.environ[env])
    for parent in REPO.parents:
        if (parent / "shared" / name).is_dir():
            return parent / "shared" / name
    return REPO.parent / "shared" / name


def log(message: str) -> None:
    print(f"[evaluate {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=Path, default=default_folder("photos", "AMBIENCE_TEST_PHOTOS"))
    p.add_argument(
        "--photos-full", type=Path, default=default_folder("photos-full", "AMBIENCE_TEST_PHOTOS_FULL")
    )
    p.add_argument("--gateway", help="retrieval: URL of a running gateway (default: start the stack here)")
    p.add_argument("--api-key", help="retrieval: for --gateway (default: AMBIENCE_API_KEY)")
    p.add_argument("--small", action="store_true", help="every run at its smallest (a quick run)")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md", help="report to update")
    p.add_argument("--img-dir", type=Path, help="plots (default: img/ beside --doc)")
    p.add_argument("--max-photos", type=int, help="retrieval: photos used (default: all; --small: 8)")
    p.add_argument("--transforms", help="retrieval: comma list (default: the whole copy-detection set)")
    p.add_argument("--sizes", help="scale: collection sizes (default 10000,100000,1000000)")
    p.add_argument("--repeats", type=int, help="scale: queries timed per size (default 20; --small 5)")
    p.add_argument("--max-gib", type=float, help="scale: largest synthetic collection per size (default 4)")
    p.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="comma list of what to run: retrieval (copy detection through the gateway + fusion grid), "
        "scale (cost versus collection size), benches (every other bench run); default all",
    )
    p.add_argument(
        "--benches", help="comma list of bench modules, or module.part for one part (default: every one)"
    )
    p.add_argument("--no-benches", action="store_true", help="skip the per-service benchmark scripts")
    p.add_argument(
        "--bench-args",
        action="append",
        default=[],
        metavar="MODULE=ARGS",
        help="extra arguments for one bench script or module.part (repeatable); its figures get a block "
        "of their own",
    )
    p.add_argument(
        "--bench-timeout",
        type=float,
        help="seconds per run of the benches part (default 600; --small 120; retrieval and scale: none)",
    )
    p.add_argument(
        "--bench-jobs",
        type=int,
        help="runs at once (default 1; --small 2: smoke runs, whose waits on start-ups and databases "
        "overlap)",
    )
    args = p.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown --parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    if args.no_benches and "benches" in args.parts:
        args.parts.remove("benches")
    try:
        args.bench_args = {m: shlex.split(a) for m, _, a in (x.partition("=") for x in args.bench_args)}
    except ValueError as exc:
        p.error(f"--bench-args: {exc}")
    return args


def evaluate_part(r: Run) -> str:
    return next((part for part, named in NAMED.items() if (r.module, r.part) == named), "benches")


def passed_on(r: Run, args: argparse.Namespace) -> list[str]:
    """evaluate's own options of the retrieval and scale parts, as the harness takes them."""
    options = {
        "retrieval": [
            ("--gateway", args.gateway),
            ("--api-key", args.api_key),
            ("--max-photos", args.max_photos),
            ("--transforms", args.transforms),
        ],
        "scale": [("--sizes", args.sizes), ("--repeats", args.repeats), ("--max-gib", args.max_gib)],
    }.get(evaluate_part(r), [])
    return [str(x) for option, value in options if value is not None for x in (option, value)]


def chosen(args: argparse.Namespace) -> list[Run]:
    everything = benches.every_run()
    wanted = args.benches.split(",") if args.benches else None
    if wanted:
        known = {r.name for r in everything} | {r.module for r in everything}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            sys.exit(
                f"unknown bench runs {unknown}; listed in bench/evaluate/benches.py: "
                + ", ".join(sorted(known))
            )
    return [
        r
        for r in everything
        if evaluate_part(r) in args.parts and (wanted is None or r.name in wanted or r.module in wanted)
    ]


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so the stacks the runs started are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse(argv)
    report.git_commit()  # before this run changes the tree
    started = time.perf_counter()
    command = "python -m bench.evaluate" + (" " + shlex.join(argv if argv is not None else sys.argv[1:]))
    command = command.strip()
    if args.api_key:
        os.environ["AMBIENCE_API_KEY"] = args.api_key  # not on the command line the report shows
        args.api_key = None
    img_dir = args.img_dir or args.doc.parent / "img"
    plots = (img_dir, os.path.relpath(img_dir, args.doc.parent))
    timeout = args.bench_timeout or (120 if args.small else 600)

    def one(r: Run) -> list[tuple[str, str, str]]:
        extra = args.bench_args.get(r.name, args.bench_args.get(r.module, []))
        log(f"{r.name} {' '.join(extra)}".rstrip())
        limit = timeout if evaluate_part(r) == "benches" else None
        result = benches.run(
            r, args.small, args.photos, args.photos_full, limit, passed_on(r, args) + extra, plots
        )
        log(f"{r.name}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.0f}s")
        suffix = f" ({' '.join(extra)})" if extra else ""
        return [
            (r.key(extra, section), f"## {heading}{suffix}", text) for section, heading, text in result.blocks
        ]

    # In small mode two at a time (each is a smoke run; the pair keeps both cores busy while one of
    # them waits on a subprocess or an import).
    with ThreadPoolExecutor(args.bench_jobs or (2 if args.small else 1)) as pool:
        blocks = [block for run_blocks in pool.map(one, chosen(args)) for block in run_blocks]
    if "benches" in args.parts and not args.benches:
        skipped = benches.unlisted()
        blocks.append(
            (
                "bench.not_run",
                "## Benchmark scripts this command does not run",
                "Scripts under `bench/` missing from the list in `bench/evaluate/benches.py`, "
                "whose figures are not in this report: "
                + (", ".join(f"`bench/{m}.py`" for m in skipped) or "none")
                + ".",
            )
        )
    complete = args.parts == list(PARTS) and not args.benches and not args.bench_args
    footer = report.provenance(command)
    blocks = [(key, heading, f"{body}\n\n{footer}") for key, heading, body in blocks]
    head = report.header(command, time.perf_counter() - started) if complete else None
    report.write(args.doc, blocks, head)
    log(f"wrote {args.doc} in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())

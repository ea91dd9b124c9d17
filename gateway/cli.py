"""The ``ambience`` command line."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.common.errors import EXIT_WEIGHTS_MISSING
from services.common.settings import CommonSettings, markdown_table
from services.registry import SERVICES, ServiceInfo


def missing_requirements(info: ServiceInfo) -> list[str]:
    return [mod for mod in info.requires if importlib.util.find_spec(mod) is None]


def serve(names: list[str], data_dir: Path | None) -> int:
    """Run each service in its own process until interrupted; services that refuse to start for
    missing weights (exit 2) are reported unavailable and the rest keep running."""
    env = dict(os.environ)
    if data_dir is not None:
        env["AMBIENCE_DATA_DIR"] = str(data_dir)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name in names:
        info = SERVICES[name]
        missing = missing_requirements(info)
        if missing:
            print(
                f"[ambience] {name}: unavailable (missing Python modules: {', '.join(missing)}; "
                f"pip install -e '.[{name}]')",
                file=sys.stderr,
            )
            continue
        procs[name] = subprocess.Popen([sys.executable, "-m", info.module], env=env)
        print(f"[ambience] {name}: starting on port {info.port} (pid {procs[name].pid})", file=sys.stderr)
    if not procs:
        print("[ambience] nothing to run", file=sys.stderr)
        return 1

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    running = dict(procs)
    exit_code = 0
    while running:
        time.sleep(0.5)
        if stopping:
            break
        for name, proc in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            del running[name]
            if code in (0, -signal.SIGTERM, -signal.SIGINT):
                print(f"[ambience] {name}: stopped", file=sys.stderr)
            elif code == EXIT_WEIGHTS_MISSING:
                print(
                    f"[ambience] {name}: unavailable (model weights missing; see its log above)",
                    file=sys.stderr,
                )
            else:
                print(f"[ambience] {name}: exited with code {code}", file=sys.stderr)
                exit_code = 1
    for proc in running.values():
        proc.send_signal(signal.SIGTERM)
    for proc in running.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return exit_code


def import_folder(args: argparse.Namespace) -> int:
    """``ambience import``: exit 0 when every file is stored, 1 when some failed, 3 when refused."""
    from services.common.importer import ImportRefused, build_feature, run_import
    from services.common.store import StoreMismatchError

    data_dir = args.data_dir / args.service if args.data_dir is not None else None
    try:
        feature = build_feature(args.service, data_dir)
        report = run_import(
            feature,
            args.dir,
            ids_from_names=args.ids_from_filenames,
            start_id=args.start_id,
            jobs=args.jobs,
            chunk_size=args.chunk_size,
            progress=not args.no_progress,
        )
    except (ImportRefused, StoreMismatchError) as exc:
        print(f"[ambience] import refused: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(
            "[ambience] import interrupted; what was stored stays, run the same command to resume",
            file=sys.stderr,
        )
        return 130
    print(report.summary(), file=sys.stderr)
    return 1 if report.failures else 0


def settings_markdown() -> str:
    """Every setting of every service, one table per service (the README's settings section)."""
    parts = ["### Shared", "", markdown_table([CommonSettings])]
    for info in SERVICES.values():
        parts += ["", f"### {info.name}", "", markdown_table([info.settings_class()])]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ambience", description="Self-hosted image retrieval suite")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run every service (or one) on this machine")
    p_serve.add_argument(
        "--service", action="append", choices=sorted(SERVICES), help="run only this service (repeatable)"
    )
    p_serve.add_argument(
        "--data-dir", type=Path, default=None, help="data root (default: $AMBIENCE_DATA_DIR or ./data)"
    )
    sub.add_parser("settings", help="print every setting (env var, default, meaning) as markdown")
    p_import = sub.add_parser(
        "import", help="compute a service's features for a folder of images, straight into its store"
    )
    p_import.add_argument("service", choices=sorted(SERVICES), help="the feature service")
    p_import.add_argument("dir", type=Path, help="folder of images (walked recursively)")
    ids = p_import.add_mutually_exclusive_group()
    ids.add_argument(
        "--ids-from-filenames",
        action="store_true",
        help="image id = file name without extension (123.jpg -> 123)",
    )
    ids.add_argument(
        "--start-id",
        type=int,
        default=None,
        metavar="N",
        help="first sequential id (default: one past the largest stored or mapped id)",
    )
    p_import.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="worker processes for decoding and extraction (default: all cores)",
    )
    p_import.add_argument(
        "--chunk-size",
        type=int,
        default=16,
        metavar="N",
        help="files per worker task and per store commit, at most (default 16)",
    )
    p_import.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data root (default: the service's data dir from its settings)",
    )
    p_import.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.service or list(SERVICES), args.data_dir)
    if args.command == "settings":
        print(settings_markdown())
        return 0
    if args.command == "import":
        return import_folder(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""``ambience import``: compute one service's features for a folder of images, straight into its store
(no service running; see ambience/importer.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from services.registry import SERVICES


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    p_import.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a Dask distributed scheduler (tcp://host:8786): its workers decode and extract "
        "(default: local worker processes; needs pip install 'ambience[scale]')",
    )
    p_import.add_argument(
        "--scheduler-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="with --scheduler: how long to keep trying to reach the scheduler (default 20)",
    )
    p_import.add_argument(
        "--send-bytes",
        action="store_true",
        help="with --scheduler: send each file's bytes to the workers "
        "(default: workers read the same path from a folder they share)",
    )
    p_import.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """``ambience import``: exit 0 when every file is stored, 1 when some failed, 3 when refused."""
    from ambience.importer import ImportRefused, build_feature, run_import
    from services.common.errors import StoreMismatchError

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
            scheduler=args.scheduler,
            send_bytes=args.send_bytes,
            scheduler_timeout_s=args.scheduler_timeout,
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

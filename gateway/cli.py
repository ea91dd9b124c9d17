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


def mark_unavailable(run_dir: Path, name: str, reason: str) -> None:
    """Tell the gateway (its /health, AMBIENCE_GATEWAY_RUNNER_STATE_DIR) why a service is not running."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{name}.unavailable").write_text(reason + "\n")


def serve(names: list[str], data_dir: Path | None, gateway: bool = False) -> int:
    """Run each service (and the gateway) in its own process until interrupted, with the embedded
    PostgreSQL unless AMBIENCE_PG_DSN names a server; services that refuse to start for missing
    weights (exit 2) are reported unavailable and the rest keep running."""
    env = dict(os.environ)
    if data_dir is not None:
        env["AMBIENCE_DATA_DIR"] = str(data_dir)
    root = data_dir if data_dir is not None else CommonSettings().data_dir
    run_dir = root / "run"
    for stale in run_dir.glob("*.unavailable"):
        stale.unlink()
    embedded = None
    if (gateway or "ocr" in names) and not env.get("AMBIENCE_PG_DSN"):
        from services.common.postgres import EmbeddedPostgres, PostgresSettings, ensure_database

        pg = PostgresSettings()
        embedded = EmbeddedPostgres(pg.data_dir or root / "postgres")
        # One server for every process: the services get its DSN instead of starting their own.
        env["AMBIENCE_PG_DSN"] = ensure_database(embedded.start(), pg.database)
        print(f"[ambience] postgres: embedded server in {embedded.pgdata}", file=sys.stderr)
    try:
        return _serve(names, env, run_dir, gateway)
    finally:
        if embedded is not None:
            embedded.release()


def _serve(names: list[str], env: dict[str, str], run_dir: Path, gateway: bool) -> int:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name in names:
        info = SERVICES[name]
        missing = missing_requirements(info)
        if missing:
            mark_unavailable(run_dir, name, f"missing Python modules: {', '.join(missing)}")
            print(
                f"[ambience] {name}: unavailable (missing Python modules: {', '.join(missing)}; "
                f"pip install -e '.[{name}]')",
                file=sys.stderr,
            )
            continue
        procs[name] = subprocess.Popen([sys.executable, "-m", info.module], env=env)
        print(f"[ambience] {name}: starting on port {info.port} (pid {procs[name].pid})", file=sys.stderr)
    if gateway:
        procs["gateway"] = subprocess.Popen([sys.executable, "-m", "gateway"], env=env)
        print(f"[ambience] gateway: starting (pid {procs['gateway'].pid})", file=sys.stderr)
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
                mark_unavailable(run_dir, name, "model weights missing (see the service's log)")
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


#: Services whose index is trained on the stored vectors: route, and CLI options -> JSON body.
TRAIN_ROUTES = {
    "global_features": "/train_global_features_pca",
    "local_features": "/train_local_features_index",
}


def train(service: str, url: str | None, body: dict[str, object]) -> int:
    """Ask a running service to train on its stored vectors (it rebuilds its index meanwhile)."""
    import json

    import httpx

    base = url or f"http://127.0.0.1:{SERVICES[service].port}"
    print(f"[ambience] training {service} at {base} ...", file=sys.stderr)
    try:
        r = httpx.post(base + TRAIN_ROUTES[service], json=body, timeout=None)
    except httpx.HTTPError as exc:
        print(f"[ambience] {service} at {base} is not reachable: {exc}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(r.json(), indent=2))
    except ValueError:
        print(r.text)
    return 0 if r.status_code == 200 else 1


def settings_markdown() -> str:
    """Every setting of every service, one table per service (the README's settings section)."""
    from services.common.postgres import PostgresSettings

    parts = ["### Shared", "", markdown_table([CommonSettings, PostgresSettings])]
    for info in SERVICES.values():
        parts += ["", f"### {info.name}", "", markdown_table([info.settings_class()])]
    from gateway.settings import GatewaySettings

    parts += ["", "### gateway", "", markdown_table([GatewaySettings])]
    return "\n".join(parts)


def add_client_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p_index = sub.add_parser("index", help="add every image under a folder through the gateway (resumable)")
    p_index.add_argument("folder", type=Path)
    p_index.add_argument(
        "--gateway", help="gateway URL (default $AMBIENCE_GATEWAY_URL or http://127.0.0.1:44444)"
    )
    p_index.add_argument(
        "--mapping", type=Path, help="file name -> id CSV (default FOLDER/.ambience_ids.csv)"
    )
    p_index.add_argument("--concurrency", type=int, default=4, help="uploads in flight (default 4)")
    p_index.add_argument("--start-id", type=int, default=0, help="first id handed out (default 0)")
    p_search = sub.add_parser("search", help="reverse search an image, or search by text")
    p_search.add_argument("image", type=Path, nargs="?", help="query image")
    p_search.add_argument("--text", help="search by text (image_text service) instead of an image")
    p_search.add_argument("--ocr", action="store_true", help="with --text: search the text in images (OCR)")
    p_search.add_argument("--duplicate", action="store_true", help="duplicate mode of /reverse_search")
    p_search.add_argument("-k", type=int, default=20, help="results of a text search (default 20)")
    p_search.add_argument(
        "--gateway", help="gateway URL (default $AMBIENCE_GATEWAY_URL or http://127.0.0.1:44444)"
    )
    p_search.add_argument("--mapping", type=Path, help="CSV written by `ambience index` to show file names")


def run_client_command(args: argparse.Namespace) -> int:
    import httpx

    from gateway import client

    try:
        if args.command == "index":
            if not args.folder.is_dir():
                print(f"ambience index: {args.folder} is not a folder", file=sys.stderr)
                return 2
            summary = client.index_folder(
                args.folder, args.gateway, args.mapping, max(args.concurrency, 1), args.start_id
            )
            for problem in summary.pop("problems"):
                print(f"  {problem}", file=sys.stderr)
            print(", ".join(f"{k}: {v}" for k, v in summary.items()))
            return 1 if summary.get("failed") else 0
        if args.text:
            print(client.search_text(args.text, args.k, args.gateway, args.mapping, ocr=args.ocr))
        elif args.image:
            print(client.search_image(args.image, args.gateway, args.mapping, duplicate=args.duplicate))
        else:
            print("ambience search: give an IMAGE or --text", file=sys.stderr)
            return 2
    except (httpx.HTTPError, RuntimeError) as exc:
        print(f"ambience {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def add_models_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from gateway.models_command import model_services

    p_models = sub.add_parser("models", help="download model weights ahead of time, or list them")
    models_sub = p_models.add_subparsers(dest="models_command", required=True)
    p_fetch = models_sub.add_parser(
        "fetch",
        help="download every weights/label file the model services need into $AMBIENCE_MODELS_DIR "
        "(resumes interrupted downloads, verifies digests, skips files already there)",
    )
    p_fetch.add_argument(
        "service",
        nargs="*",
        metavar="SERVICE",
        help=f"services to fetch for (default: all of {', '.join(model_services())})",
    )
    p_fetch.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    p_list = models_sub.add_parser(
        "list", help="show each file the model services need and whether it is present (exit 1 if not)"
    )
    p_list.add_argument("service", nargs="*", metavar="SERVICE", help="services to list (default: all)")


def run_models(args: argparse.Namespace) -> int:
    from gateway import models_command

    unknown = sorted(set(args.service) - set(models_command.model_services()))
    if unknown:
        print(
            f"ambience models: {', '.join(unknown)}: not a model service (model services: "
            f"{', '.join(models_command.model_services())})",
            file=sys.stderr,
        )
        return 2
    if args.models_command == "fetch":
        return models_command.fetch(args.service, timeout=args.timeout)
    return models_command.list_files(args.service)


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
    p_serve.add_argument(
        "--no-gateway", action="store_true", help="without the gateway (default: with it unless --service)"
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
    add_client_commands(sub)
    add_models_parser(sub)
    p_train = sub.add_parser(
        "train",
        help="train a running service's index on its stored vectors "
        "(global_features: PCA whitening, and the compressed index if configured; "
        "local_features: the OPQ/IVF/PQ index)",
    )
    p_train.add_argument("service", choices=sorted(TRAIN_ROUTES))
    p_train.add_argument("--url", default=None, help="service URL (default: 127.0.0.1 on its port)")
    p_train.add_argument("--dim", type=int, default=None, help="whitened dimension")
    p_train.add_argument("--power", type=float, default=None, help="whitening power (0.5 full)")
    p_train.add_argument("--no-whitening", action="store_true", help="index raw vectors")
    p_train.add_argument(
        "--factory", default=None, help="local_features: FAISS factory string (default: by collection size)"
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        with_gateway = not args.no_gateway and not args.service
        return serve(args.service or list(SERVICES), args.data_dir, gateway=with_gateway)
    if args.command in ("index", "search"):
        return run_client_command(args)
    if args.command == "models":
        return run_models(args)
    if args.command == "train":
        if args.service == "local_features":
            body: dict[str, object] = {"factory": args.factory}  # None: sized to the collection
        else:
            body = {"whitening": not args.no_whitening, "dim": args.dim, "power": args.power}
        return train(args.service, args.url, {k: v for k, v in body.items() if v is not None})
    if args.command == "settings":
        print(settings_markdown())
        return 0
    if args.command == "import":
        return import_folder(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

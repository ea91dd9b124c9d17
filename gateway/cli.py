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
            print(f"[ambience] {name}: unavailable (missing Python modules: {', '.join(missing)}; "
                  f"pip install -e '.[{name}]')", file=sys.stderr)
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
    while running and not stopping:
        time.sleep(0.5)
        for name, proc in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            del running[name]
            if code == EXIT_WEIGHTS_MISSING:
                print(f"[ambience] {name}: unavailable (model weights missing; see its log above)",
                      file=sys.stderr)
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
    p_serve.add_argument("--service", action="append", choices=sorted(SERVICES),
                         help="run only this service (repeatable)")
    p_serve.add_argument("--data-dir", type=Path, default=None,
                         help="data root (default: $AMBIENCE_DATA_DIR or ./data)")
    add_models_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.service or list(SERVICES), args.data_dir)
    if args.command == "models":
        return run_models(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

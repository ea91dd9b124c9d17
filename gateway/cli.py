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


#: Services whose index is trained on the stored vectors: route, and CLI options -> JSON body.
TRAIN_ROUTES = {"global_features": "/train_global_features_pca"}


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
    print(json.dumps(r.json(), indent=2))
    return 0 if r.status_code == 200 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ambience", description="Self-hosted image retrieval suite")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run every service (or one) on this machine")
    p_serve.add_argument("--service", action="append", choices=sorted(SERVICES),
                         help="run only this service (repeatable)")
    p_serve.add_argument("--data-dir", type=Path, default=None,
                         help="data root (default: $AMBIENCE_DATA_DIR or ./data)")
    p_train = sub.add_parser(
        "train",
        help="train a running service's index on its stored vectors "
        "(global_features: PCA whitening, and the compressed index if configured)",
    )
    p_train.add_argument("service", choices=sorted(TRAIN_ROUTES))
    p_train.add_argument("--url", default=None, help="service URL (default: 127.0.0.1 on its port)")
    p_train.add_argument("--dim", type=int, default=None, help="whitened dimension")
    p_train.add_argument("--power", type=float, default=None, help="whitening power (0.5 full)")
    p_train.add_argument("--no-whitening", action="store_true", help="index raw vectors")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.service or list(SERVICES), args.data_dir)
    if args.command == "train":
        body = {"whitening": not args.no_whitening, "dim": args.dim, "power": args.power}
        return train(args.service, args.url, {k: v for k, v in body.items() if v is not None})
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

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


def train_local_features_index(url: str, factory: str | None) -> int:
    """Ask a running local_features service to train its compressed index (waits until done)."""
    import httpx

    body = {"factory": factory} if factory else None
    print(f"[ambience] training the local_features index at {url}...", file=sys.stderr)
    try:
        r = httpx.post(f"{url.rstrip('/')}/train_local_features_index", json=body, timeout=None)
    except httpx.HTTPError as exc:
        print(f"[ambience] cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if r.status_code != 200:
        print(f"[ambience] training failed ({r.status_code}): {r.text}", file=sys.stderr)
        return 1
    print(r.text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ambience", description="Self-hosted image retrieval suite")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run every service (or one) on this machine")
    p_serve.add_argument("--service", action="append", choices=sorted(SERVICES),
                         help="run only this service (repeatable)")
    p_serve.add_argument("--data-dir", type=Path, default=None,
                         help="data root (default: $AMBIENCE_DATA_DIR or ./data)")
    p_train = sub.add_parser("train-local-features-index",
                             help="train the local_features OPQ/IVF/PQ index from the stored descriptors")
    p_train.add_argument("--url", default=f"http://127.0.0.1:{SERVICES['local_features'].port}",
                         help="the local_features service")
    p_train.add_argument("--factory", default=None, help="FAISS factory string (default: by collection size)")
    args = parser.parse_args(argv)
    if args.command == "train-local-features-index":
        return train_local_features_index(args.url, args.factory)
    if args.command == "serve":
        return serve(args.service or list(SERVICES), args.data_dir)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""``ambience serve``: run each service (and the gateway) in its own process and supervise them."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.common.descriptor import ServiceDescriptor
from services.common.errors import EXIT_WEIGHTS_MISSING
from services.common.settings import CommonSettings
from services.registry import SERVICES


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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


def run(args: argparse.Namespace) -> int:
    with_gateway = not args.no_gateway and not args.service
    return serve(args.service or list(SERVICES), args.data_dir, gateway=with_gateway)


def missing_requirements(info: ServiceDescriptor) -> list[str]:
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
                f"{info.install_hint})",
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

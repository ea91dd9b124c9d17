"""``ambience serve``: run each service (and the gateway) in its own process and supervise them."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.common.descriptor import ServiceDescriptor
from services.common.errors import EXIT_STARTUP_FAILED, EXIT_WEIGHTS_MISSING
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
    return serve(args.service or gateway_services(), args.data_dir, gateway=with_gateway)


def gateway_services() -> list[str]:
    """The services the gateway uses (AMBIENCE_GATEWAY_SERVICES, every registered one by default):
    a service turned off there is not started either."""
    from gateway.settings import GatewaySettings

    wanted = set(GatewaySettings().services)
    return [name for name in SERVICES if name in wanted]


def missing_requirements(info: ServiceDescriptor) -> list[str]:
    return [mod for mod in info.requires if importlib.util.find_spec(mod) is None]


def mark_unavailable(run_dir: Path, name: str, reason: str) -> None:
    """Tell the gateway (its /health, AMBIENCE_GATEWAY_RUNNER_STATE_DIR) why a service is not running."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{name}.unavailable").write_text(reason + "\n")


def serve(names: list[str], data_dir: Path | None, gateway: bool = False) -> int:
    """Run each service (and the gateway) in its own process until interrupted, with the embedded
    PostgreSQL unless AMBIENCE_PG_DSN names a server, as a supervisor: a service that crashes is
    started again after a backoff (1 s doubling to 60 s; the gateway's /health shows the restarts),
    services that refuse to start (missing weights: exit 2, other refusals: exit 3) are reported
    unavailable while the rest keep running, every child dies with the wrapper (even kill -9), and
    the exit code is 1 when nothing requested is running."""
    env = dict(os.environ)
    if data_dir is not None:
        env["AMBIENCE_DATA_DIR"] = str(data_dir)
    root = data_dir if data_dir is not None else CommonSettings().data_dir
    run_dir = root / "run"
    for stale in [*run_dir.glob("*.unavailable"), *run_dir.glob("*.restarts")]:
        stale.unlink()
    embedded = None
    if (gateway or "ocr" in names) and not env.get("AMBIENCE_PG_DSN"):
        from services.common.postgres.database import EmbeddedPostgres, PostgresSettings, ensure_database

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


#: Longest wait before a crashed service is started again; the wait doubles per crash from 1 s.
RESTART_BACKOFF_MAX_S = 60.0
#: A service that ran this long before crashing starts again from the shortest wait.
STABLE_AFTER_S = 60.0
#: Exit codes that say "this cannot run" (refusals explained in its log): never restarted.
NOT_RESTARTED = {EXIT_WEIGHTS_MISSING: "model weights missing", EXIT_STARTUP_FAILED: "refused to start"}

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, nice: int = 0) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGTERM when the wrapper dies, even by kill -9, so no
    orphan keeps a port (Linux prctl; elsewhere the wrapper's own shutdown has to do); with ``nice``,
    it runs at that much lower a CPU priority."""

    def preexec() -> None:
        if nice:
            with contextlib.suppress(OSError):
                os.nice(nice)
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the wrapper died before prctl took effect
            os._exit(1)

    return preexec


@dataclass
class Child:
    """One supervised process: how to start it, and its restart history."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    crashes: int = 0
    restart_at: float | None = None
    final: str | None = None  # why it is not running and will not be restarted
    #: Added to the process's niceness: a lower CPU priority (the services adds do not wait for).
    nice: int = 0

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(self.argv, env=env, preexec_fn=die_with_parent(os.getpid(), self.nice))
        self.started_at = time.monotonic()
        self.restart_at = None

    def backoff(self) -> float:
        return min(2.0 ** (self.crashes - 1), RESTART_BACKOFF_MAX_S)


def deferred_services() -> tuple[set[str], int]:
    """The services the gateway's adds do not wait for (AMBIENCE_GATEWAY_DEFERRED_SERVICES) and the
    niceness they run with (AMBIENCE_GATEWAY_DEFERRED_NICE)."""
    from gateway.settings import GatewaySettings

    settings = GatewaySettings()
    return set(settings.deferred_services), settings.deferred_nice


def record_restart(run_dir: Path, child: Child, code: int) -> None:
    """Tell the gateway (its /health) that the service crashed and is being restarted."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{child.name}.restarts").write_text(
        json.dumps({"restarts": child.crashes, "last_exit_code": code, "at": time.time()}) + "\n"
    )


def _serve(names: list[str], env: dict[str, str], run_dir: Path, gateway: bool) -> int:
    children: dict[str, Child] = {}
    deferred, nice_level = deferred_services() if gateway else (set(), 0)
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
        nice = nice_level if name in deferred else 0
        children[name] = Child(name, [sys.executable, "-m", info.module], nice=nice)
    if gateway:
        children["gateway"] = Child("gateway", [sys.executable, "-m", "gateway"])
    if not children:
        print("[ambience] nothing to run", file=sys.stderr)
        return 1
    for child in children.values():
        child.start(env)
        port = f" on port {SERVICES[child.name].port}" if child.name in SERVICES else ""
        print(f"[ambience] {child.name}: starting{port} (pid {child.proc.pid})", file=sys.stderr)  # type: ignore[union-attr]

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        time.sleep(0.5)
        if stopping:  # asked to stop while asleep: children a group signal ended are not crashes
            break
        for child in children.values():
            supervise(child, env, run_dir)
        if not stopping and all(c.final is not None for c in children.values()):
            print(
                "[ambience] nothing requested is running: "
                + "; ".join(f"{c.name} {c.final}" for c in children.values()),
                file=sys.stderr,
            )
            return 1
    running = [c.proc for c in children.values() if c.proc is not None and c.proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


def supervise(child: Child, env: dict[str, str], run_dir: Path) -> None:
    """One look at ``child``: restart it when its backoff is over, note a crash or a refusal."""
    now = time.monotonic()
    if child.final is not None:
        return
    if child.restart_at is not None:
        if now >= child.restart_at:
            child.start(env)
            print(f"[ambience] {child.name}: restarted (pid {child.proc.pid})", file=sys.stderr)  # type: ignore[union-attr]
        return
    code = child.proc.poll() if child.proc is not None else None
    if code is None:
        return
    if code in NOT_RESTARTED:
        child.final = NOT_RESTARTED[code]
        if code == EXIT_WEIGHTS_MISSING:
            mark_unavailable(run_dir, child.name, "model weights missing (see the service's log)")
        print(f"[ambience] {child.name}: unavailable ({child.final}; see its log above)", file=sys.stderr)
        return
    if code in (0, -signal.SIGTERM, -signal.SIGINT):  # stopped on purpose (not by us): left stopped
        child.final = "stopped"
        print(f"[ambience] {child.name}: stopped", file=sys.stderr)
        return
    child.crashes = 1 if now - child.started_at >= STABLE_AFTER_S else child.crashes + 1
    child.restart_at = now + child.backoff()
    record_restart(run_dir, child, code)
    print(
        f"[ambience] {child.name}: exited with code {code}; restarting in {child.backoff():g}s "
        f"(crash {child.crashes})",
        file=sys.stderr,
    )

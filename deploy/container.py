#!/usr/bin/env python3
"""Entry point of every ambience container image (installed as /usr/local/bin/ambience-container).

``ambience-container run``: runs the service named by ``AMBIENCE_SERVICE`` (build argument SERVICE)
by replacing itself with ``python -m <module>`` (exec: the service gets the container's SIGTERM
directly), bound to 0.0.0.0 unless ``AMBIENCE_<SERVICE>_HOST`` says otherwise: a service bound to a
container's loopback interface cannot be reached from the other containers.

``ambience-container health [URL]``: exits 0 when ``GET URL`` (default: this container's service,
``http://127.0.0.1:<port>/health``) answers 200 within the timeout, 1 otherwise. Used by the image's
HEALTHCHECK and by compose's ``depends_on: condition: service_healthy``.

Only the standard library and services.registry (no heavy imports): it runs every few seconds.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

GATEWAY = "gateway"
GATEWAY_MODULE = "gateway"
GATEWAY_PORT = 44444


def service_name(env: dict[str, str]) -> str:
    name = env.get("AMBIENCE_SERVICE", "")
    if not name:
        raise SystemExit(
            "ambience-container: AMBIENCE_SERVICE is not set (the image's SERVICE build argument)"
        )
    return name


def env_prefix(name: str) -> str:
    return f"AMBIENCE_{name.upper()}_"


def module_and_port(name: str) -> tuple[str, int]:
    if name == GATEWAY:
        return GATEWAY_MODULE, GATEWAY_PORT
    from services.registry import SERVICES

    if name not in SERVICES:
        raise SystemExit(f"ambience-container: unknown service {name!r} (known: {', '.join(SERVICES)})")
    info = SERVICES[name]
    return info.module, info.port


def run_environment(env: dict[str, str]) -> dict[str, str]:
    """The environment the service runs with: bound to all interfaces unless configured."""
    out = dict(env)
    out.setdefault(f"{env_prefix(service_name(env))}HOST", "0.0.0.0")
    return out


def health_url(env: dict[str, str]) -> str:
    name = service_name(env)
    _, port = module_and_port(name)
    port = int(env.get(f"{env_prefix(name)}PORT") or port)
    return f"http://127.0.0.1:{port}/health"


def health(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            ok = resp.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{'healthy' if ok else 'unhealthy'}: {url}")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    command = argv[0] if argv else "run"
    if command == "health":
        timeout = float(env.get("AMBIENCE_HEALTH_TIMEOUT_S", "5"))
        return health(argv[1] if len(argv) > 1 else health_url(env), timeout)
    if command == "run":
        module, _ = module_and_port(service_name(env))
        os.execvpe(sys.executable, [sys.executable, "-m", module, *argv[1:]], run_environment(env))
    print("usage: ambience-container run | health [URL]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

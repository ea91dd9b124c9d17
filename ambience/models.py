"""``ambience models fetch [SERVICE...]`` and ``ambience models list``.

The files derive from each registered model service's model spec
(:func:`~services.common.models.spec.required_weights`): the
:class:`~services.common.models.weights.WeightsFile` objects it needs with its current settings
(``AMBIENCE_<SERVICE>_MODEL`` / ``_WEIGHTS`` ...), hub tags already mapped to files. ``fetch`` runs
each through :func:`~services.common.models.weights.fetch_weights` (resumable, verified download; see
services/common/models/fetch.py), so a service started afterwards finds exactly the file it looks for.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import StartupError
from services.common.models.fetch import part_path
from services.common.models.weights import WeightsFile, fetch_weights, sha256_file
from services.registry import SERVICES, required_weights


@dataclass
class Plan:
    service: str
    files: list[WeightsFile]
    #: Why the files of this service cannot even be listed ('' when they can).
    problem: str = ""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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


def run(args: argparse.Namespace) -> int:
    unknown = sorted(set(args.service) - set(model_services()))
    if unknown:
        print(
            f"ambience models: {', '.join(unknown)}: not a model service (model services: "
            f"{', '.join(model_services())})",
            file=sys.stderr,
        )
        return 2
    if args.models_command == "fetch":
        return fetch(args.service, timeout=args.timeout)
    return list_files(args.service)


def model_services() -> list[str]:
    """Registered services that need weights files (they run a model)."""
    return [name for name, info in SERVICES.items() if info.model or info.weights]


def plan(names: list[str]) -> list[Plan]:
    out = []
    for name in names:
        info = SERVICES[name]
        missing = [mod for mod in info.requires if importlib.util.find_spec(mod) is None]
        if missing:
            out.append(Plan(name, [], f"missing Python modules {', '.join(missing)} ({info.install_hint})"))
            continue
        try:
            out.append(Plan(name, required_weights(name)))
        except StartupError as exc:  # e.g. a hub tag the library does not know
            out.append(Plan(name, [], str(exc)))
    return out


def _size(path: Path) -> str:
    n = float(path.stat().st_size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # unreachable


def fetch(names: list[str], timeout: float = 30.0) -> int:
    """Download what ``names`` (default: every model service) need; 0 when all files are in place."""
    explicit = bool(names)
    failures = 0
    for p in plan(names or model_services()):
        print(f"{p.service}:", flush=True)
        if p.problem:
            print(f"  skipped: {p.problem}", flush=True)
            failures += explicit
            continue
        if not p.files:
            print("  nothing to fetch (local file or random weights configured)", flush=True)
        for wf in p.files:
            present = wf.present() is not None
            try:
                path = fetch_weights(wf, timeout=timeout)
            except StartupError as exc:
                print(f"  FAILED {wf.description}: {exc}", file=sys.stderr, flush=True)
                failures += 1
                continue
            digest = sha256_file(path)  # also leaves the digest cache the service reads at start-up
            status = "present   " if present else "downloaded"
            where = f"{path.resolve()} ({_size(path)}, sha256 {digest[:16]})"
            print(f"  {status} {wf.description} -> {where}", flush=True)
    if failures:
        print(f"ambience models fetch: {failures} file(s) or service(s) failed", file=sys.stderr)
        return 1
    return 0


def list_files(names: list[str]) -> int:
    """Show, per service, each file it needs and whether it is present; 0 when all are."""
    missing = 0
    for p in plan(names or model_services()):
        print(f"{p.service}:")
        if p.problem:
            print(f"  unknown: {p.problem}")
            continue
        if not p.files:
            print("  nothing needed (local file or random weights configured)")
        for wf in p.files:
            part = part_path(wf.target)
            found = wf.present()
            if found is not None:
                bad = wf.sha256 and sha256_file(found) != wf.sha256
                state = "CORRUPT " if bad else "present "
                missing += bool(bad)
                print(f"  {state} {wf.description} -> {found} ({_size(found)})")
            elif part.exists():
                missing += 1
                print(f"  partial  {wf.description} -> {wf.target} ({_size(part)} so far; fetch resumes)")
            else:
                missing += 1
                print(f"  missing  {wf.description} -> {wf.target}")
    return 1 if missing else 0

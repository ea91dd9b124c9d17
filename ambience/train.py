"""``ambience train``: ask a running service to train its index on its stored vectors."""

from __future__ import annotations

import argparse
import json
import sys

from services.registry import SERVICES

#: Services whose index is trained on the stored vectors, and their training route.
TRAIN_ROUTES = {info.name: info.train_route for info in SERVICES.values() if info.train_route}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
        "--force", action="store_true", help="switch to the whitening even when its self-check says it hurts"
    )
    p_train.add_argument(
        "--factory", default=None, help="local_features: FAISS factory string (default: by collection size)"
    )


def run(args: argparse.Namespace) -> int:
    if args.service == "local_features":
        body: dict[str, object] = {"factory": args.factory}  # None: sized to the collection
    else:
        body = {"whitening": not args.no_whitening, "dim": args.dim, "power": args.power, "force": args.force}
    return train(args.service, args.url, {k: v for k, v in body.items() if v is not None})


def train(service: str, url: str | None, body: dict[str, object]) -> int:
    """Ask a running service to train on its stored vectors (it rebuilds its index meanwhile)."""
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

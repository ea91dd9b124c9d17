"""What the model-speed parts share: the tiny test configurations of the ``--small`` runs, random
weights, torch's thread count, and timing modes that alternate (memory: ``ambience_support.memory``).

Random weights everywhere: the compute of a forward pass does not depend on the weight values (a
random captioner only never ends a caption early; the parts that caption say so).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from ambience_support.tiny_models import TINY_CLIP, TINY_COCA
from services.common.models.weights import ResolvedWeights

__all__ = ["RANDOM", "TINY_CLIP", "TINY_COCA", "best_seconds", "set_threads"]

RANDOM = ResolvedWeights("random", None, "random-seed0", "random")


def set_threads(args: argparse.Namespace, default: int) -> int:
    """Pin torch to ``--threads`` (the part's ``default`` when not given; 0 = torch's own default)
    and return the count torch runs with."""
    import torch

    threads = default if args.threads is None else args.threads
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def best_seconds(modes: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """The fastest of ``rounds`` timings of each mode, the modes alternating within every round: on a
    shared machine, alternating keeps a slow phase of other processes from favouring one mode."""
    best = dict.fromkeys(modes, float("inf"))
    for _ in range(rounds):
        for name, fn in modes.items():
            started = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - started)
    return best

"""Services that ``ambience serve`` marked unavailable: it could not start them for a lasting reason
(model weights missing, a refusal at start-up) and wrote why into its state folder
(``<runner_state_dir>/<service>.unavailable``; ambience/serve.py).

Such a service is left out of an add's fan-out (a part for it would wait until its weights come,
a day of retries), and the steps that follow an add (gateway/after_add.py) do not wait for a part
still pending there. /health names the reason.
"""

from __future__ import annotations

import time
from pathlib import Path


class RunnerMarks:
    """The marks in ``folder``, read at most once per ``ttl_s`` (an add or a step asks often)."""

    def __init__(self, folder: Path, ttl_s: float = 2.0) -> None:
        self.folder = folder
        self.ttl_s = ttl_s
        self._read_at = float("-inf")
        self._marked: frozenset[str] = frozenset()

    def reason(self, name: str) -> str | None:
        """Why the runner could not start ``name``, when it said so."""
        try:
            text = (self.folder / f"{name}.unavailable").read_text().strip()
        except OSError:
            return None
        return text or "marked unavailable by the runner"

    def marked(self) -> frozenset[str]:
        """The services marked now."""
        now = time.monotonic()
        if now - self._read_at >= self.ttl_s:
            try:
                names = {p.stem for p in self.folder.glob("*.unavailable")}
            except OSError:
                names = set()
            self._marked, self._read_at = frozenset(names), now
        return self._marked

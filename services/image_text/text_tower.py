"""image_text's text side, without torch until it is used: the text tower and tokenizer are loaded
on the first text query (:class:`LazyTextTower`, which imports torch then) and released after
``text_idle_s`` without one. Both image runtimes share it: the eager session
(:mod:`services.image_text.model`) and the ONNX one (:mod:`services.image_text.onnx_session`), whose
process only imports torch once a text query comes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from services.common.models.memory import release_freed_memory
from services.common.models.weights import ResolvedWeights

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class LazyTextTower:
    """The text tower and tokenizer, loaded on first use and released after ``idle_s`` unused
    (0: kept once loaded). Callers hold what :meth:`get` returns for the length of their call, so a
    release never pulls the tower from under a running query."""

    def __init__(self, load: Callable[[], tuple[Any, Any]], idle_s: float) -> None:
        self._load = load
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None
        self._last_used = 0.0
        self.loads = 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def get(self) -> tuple[Any, Any]:
        """(text model, tokenizer), loading them when needed."""
        with self._lock:
            self._last_used = time.monotonic()
            if self._loaded is None:
                started = time.perf_counter()
                self._loaded = self._load()
                self.loads += 1
                log.info("image_text: text tower loaded in %.1f s", time.perf_counter() - started)
                if self.idle_s > 0 and self._watcher is None:
                    self._watcher = threading.Thread(
                        target=self._watch, name="image_text-text-idle", daemon=True
                    )
                    self._watcher.start()
            return self._loaded

    def release(self) -> None:
        with self._lock:
            if self._loaded is None:
                return
            self._loaded = None
        release_freed_memory()
        log.info("image_text: text tower released (unused for %.0f s)", self.idle_s)

    def _watch(self) -> None:
        while not self._stop.wait(max(0.05, min(self.idle_s / 4, 30.0))):
            with self._lock:
                idle = self._loaded is not None and time.monotonic() - self._last_used >= self.idle_s
            if idle:
                self.release()

    def close(self) -> None:
        self._stop.set()


def text_loader(
    model: str,
    weights: ResolvedWeights,
    device: Any,
    quick_gelu: bool,
    preprocess_cfg: dict[str, Any] | None,
    tokenizer_folder: Path | None,
) -> Callable[[], tuple[Any, Any]]:
    """What :class:`LazyTextTower` calls to load (text model, tokenizer) on ``device``."""

    def load_text() -> tuple[Any, Any]:
        import torch

        from services.common.models.open_clip_loader import load_open_clip_tower
        from services.image_text.tokenizer import load_tokenizer

        net = load_open_clip_tower(model, weights, "text", quick_gelu, preprocess_cfg)
        if isinstance(net, torch.nn.Module):
            net = net.to(device).eval()
        else:
            net.text = net.text.to(device).eval()
        return net, load_tokenizer(model, tokenizer_folder)

    return load_text


class TextSide:
    """Text queries of a session holding ``self.text`` (a LazyTextTower) and ``self.device``."""

    text: LazyTextTower
    device: Any

    def tokenize(self, text: str) -> torch.Tensor:
        # open_clip's tokenizers cut texts longer than the context and keep the end-of-text token.
        _, tokenizer = self.text.get()
        return tokenizer([text])[0]  # type: ignore[no-any-return]

    def embed_texts(self, tokens: torch.Tensor) -> np.ndarray:
        import torch

        net, _ = self.text.get()
        with torch.inference_mode():
            out = net.encode_text(tokens.to(self.device), normalize=True)
        return out.float().cpu().numpy()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.text.close()

"""An open_clip model as image and text embedding sessions sharing one space.

The image tower is loaded at start-up (every add needs it). The text tower and the tokenizer are
loaded on the first text query and released again after ``text_idle_s`` seconds without one: a
library being indexed never holds them, and SigLIP 2's text tower (about 280M parameters, most of
them its 256k-token vocabulary) is three times its image tower. A query after a release waits for
the load once (a few seconds for SigLIP 2 from a local disk).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from open_clip.utils import to_2tuple
from PIL import Image

from services.common.models.inference import build_image_tower
from services.common.models.memory import release_freed_memory
from services.common.models.open_clip_loader import load_open_clip_tower
from services.common.models.sessions import PixelPipeline
from services.common.models.weights import ResolvedWeights
from services.image_text.tokenizer import load_tokenizer, text_config

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


class OpenClipSession:
    def __init__(
        self,
        model: str,
        weights: ResolvedWeights,
        device: torch.device,
        quick_gelu: bool = False,
        preprocess_cfg: dict[str, Any] | None = None,
        runtime: str = "eager",
        tokenizer_folder: Path | None = None,
        text_idle_s: float = 0.0,
    ) -> None:
        self.model_id = model
        self.weights = weights
        self.device = device
        visual = load_open_clip_tower(model, weights, "visual", quick_gelu, preprocess_cfg).to(device)
        release_freed_memory()  # the rest of a model built whole (random weights, a .bin checkpoint)
        self.pipeline = PixelPipeline(
            image_transform_v2(PreprocessCfg(**visual.preprocess_cfg), is_train=False)
        )
        size = to_2tuple(visual.image_size)
        self.runtime = runtime
        # encode_image is the image tower and an L2 normalisation: the tower is what a runtime runs.
        self.tower = build_image_tower(visual, runtime, torch.zeros(1, 3, *size, device=device))
        self.context_length = int(text_config(model).get("context_length", 77))

        def load_text() -> tuple[Any, Any]:
            net = load_open_clip_tower(model, weights, "text", quick_gelu, preprocess_cfg)
            if isinstance(net, torch.nn.Module):
                net = net.to(device).eval()
            else:
                net.text = net.text.to(device).eval()
            return net, load_tokenizer(model, tokenizer_folder)

        self.text = LazyTextTower(load_text, text_idle_s)
        self.dim = int(self.embed_images(np.zeros((1, *size, 3), np.uint8)).shape[1])

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.pipeline.pixels(image.convert("RGB"))

    def tokenize(self, text: str) -> torch.Tensor:
        # open_clip's tokenizers cut texts longer than the context and keep the end-of-text token.
        _, tokenizer = self.text.get()
        return tokenizer([text])[0]

    @torch.inference_mode()
    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        out = self.tower(self.pipeline.to_tensor(pixels, self.device))
        return torch.nn.functional.normalize(out, dim=-1).cpu().numpy()

    @torch.inference_mode()
    def embed_texts(self, tokens: torch.Tensor) -> np.ndarray:
        net, _ = self.text.get()
        out = net.encode_text(tokens.to(self.device), normalize=True)
        return out.float().cpu().numpy()

    def close(self) -> None:
        self.text.close()

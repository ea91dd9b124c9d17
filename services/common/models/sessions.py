"""Sessions: a loaded model behind a Protocol (preprocess on the caller's thread, one forward pass
per batch), the device it runs on, and the fields a model service reports about it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from services.common.errors import StartupError
from services.common.models.batching import MicroBatcher
from services.common.models.weights import ResolvedWeights

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from services.common.models.spec import ModelServiceSettings


def select_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StartupError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return device


def configure_torch(settings: ModelServiceSettings) -> None:
    import torch

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)


class ImageEmbeddingSession(Protocol):
    """A loaded image model. ``preprocess`` runs on the request's thread (in parallel, no torch);
    ``embed_images`` runs one forward pass for a batch (the micro-batcher's worker calls it)."""

    model_id: str
    dim: int
    weights: ResolvedWeights
    device: torch.device

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image -> the model's input pixels, (H, W, 3) uint8 (resized and cropped)."""
        ...

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, dim) float32, L2-normalised rows."""
        ...


class PixelPipeline:
    """A torchvision eval transform split in two. The PIL steps (resize, crop, mode) run on the
    request threads and give uint8 pixels; ToTensor + Normalize run batched on the model's thread.

    Only that one thread calls into torch, so request threads never start OpenMP teams of their own
    that spin against the forward pass for the same cores, and uint8 pixels (4x smaller than float)
    are what travels to the device.
    """

    def __init__(self, transform: Any) -> None:
        import torch

        steps = list(getattr(transform, "transforms", [transform]))
        cut = next((i for i, step in enumerate(steps) if "ToTensor" in type(step).__name__), None)
        if cut is None:
            raise ValueError(f"preprocessing without a ToTensor step is not supported: {transform}")
        self.pil_steps = steps[:cut]
        rest = steps[cut + 1 :]
        norm = rest.pop() if rest and type(rest[-1]).__name__ == "Normalize" else None
        if rest:
            raise ValueError(f"unsupported tensor steps after ToTensor: {rest}")
        mean = norm.mean if norm is not None else (0.0, 0.0, 0.0)
        std = norm.std if norm is not None else (1.0, 1.0, 1.0)
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1)

    def pixels(self, image: Image.Image) -> np.ndarray:
        import numpy as np

        for step in self.pil_steps:
            image = step(image)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)

    def to_tensor(self, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        import torch

        x = torch.tensor(batch, dtype=torch.uint8).to(device).permute(0, 3, 1, 2).float().div_(255)
        return (x - self.mean.to(device)) / self.std.to(device)


def describe_session(
    session: ImageEmbeddingSession, batcher: MicroBatcher[Any, Any] | None
) -> dict[str, Any]:
    """The /health and /stats fields of a model service."""
    out: dict[str, Any] = {
        "model": session.model_id,
        "dim": session.dim,
        "device": str(session.device),
        "runtime": getattr(session, "runtime", "eager"),
        **session.weights.info(),
    }
    if batcher is not None:
        out["batching"] = batcher.stats.as_dict()
    return out


def metadata_for(session: ImageEmbeddingSession) -> dict[str, Any]:
    """Store metadata fields that tie stored vectors to the model that made them."""
    return {"model": session.model_id, "weights_sha256": session.weights.digest, "dim": session.dim}

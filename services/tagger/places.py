"""Places365 scene tags from a ResNet50 (CSAIL's published model), without FastAPI.

Faithful to CSAIL's ``run_placesCNN_unified.py``: the image is resized to 224x224 (no crop),
normalised with the ImageNet mean/std, and the softmax over the 365 categories ranks scenes; the
indoor/outdoor call is the mean of the IO labels (0 indoor, 1 outdoor) of the top-10 categories,
< 0.5 meaning indoor.

Readable names: the ``/x/`` prefix is dropped, underscores become spaces, and a sub-category is
put in front of its category as a qualifier: ``/a/airfield`` -> ``airfield``, ``/b/bus_interior``
-> ``bus interior``, ``/f/field/wild`` -> ``wild field``, ``/s/swimming_pool/indoor`` ->
``indoor swimming pool``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from services.common.errors import StartupError, WeightsMissingError
from services.common.models.inference import build_image_tower

NUM_CLASSES = 365
INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: How many top categories vote on indoor/outdoor (as CSAIL's script does).
IO_VOTERS = 10


def readable_category(raw: str) -> str:
    """``/f/field/wild`` -> ``wild field`` (see the module docstring for the rule)."""
    name = raw.strip()
    if len(name) > 3 and name[0] == "/" and name[2] == "/":
        name = name[3:]
    parts = [part.replace("_", " ").strip() for part in name.strip("/").split("/") if part.strip()]
    return " ".join(parts[1:] + parts[:1]) if parts else raw


@dataclass(frozen=True)
class PlacesLabels:
    """The 365 categories (readable names, in class-index order) and their indoor/outdoor labels."""

    raw_names: tuple[str, ...]
    names: tuple[str, ...]
    #: 0 = indoor, 1 = outdoor (CSAIL's IO file says 1 / 2).
    outdoor: np.ndarray

    @classmethod
    def read(cls, categories_file: Path, io_file: Path) -> PlacesLabels:
        """Parse ``categories_places365.txt`` ("/a/airfield 0") and ``IO_places365.txt`` ("/a/airfield 2")."""
        for path in (categories_file, io_file):
            if not path.is_file():
                raise WeightsMissingError(f"tagger: {path} is missing")
        raw: list[str] = []
        for lineno, line in enumerate(categories_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) != len(raw):
                raise StartupError(
                    f"tagger: {categories_file}:{lineno}: expected '<category> {len(raw)}', got {line!r}"
                )
            raw.append(fields[0])
        io_by_name: dict[str, int] = {}
        for lineno, line in enumerate(io_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2 or fields[1] not in ("1", "2"):
                raise StartupError(f"tagger: {io_file}:{lineno}: expected '<category> 1|2', got {line!r}")
            io_by_name[fields[0]] = int(fields[1]) - 1
        missing = [name for name in raw if name not in io_by_name]
        if missing:
            raise StartupError(f"tagger: {io_file} has no indoor/outdoor label for {missing[:5]}")
        names = tuple(readable_category(name) for name in raw)
        return cls(tuple(raw), names, np.array([io_by_name[name] for name in raw], dtype=np.float32))

    def __len__(self) -> int:
        return len(self.raw_names)


def build_resnet50(num_classes: int = NUM_CLASSES) -> torch.nn.Module:
    return torchvision.models.resnet50(weights=None, num_classes=num_classes)


def load_places_checkpoint(net: torch.nn.Module, path: Path) -> None:
    """Load CSAIL's checkpoint strictly: ``{'epoch', 'arch', 'state_dict': {'module.*': ...},
    'best_prec1'}`` as published (``resnet50_places365.pth.tar``), or a plain state dict."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles and zip archives fail in many ways
        raise StartupError(f"tagger: cannot read checkpoint {path}: {exc}") from exc
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise StartupError(f"tagger: {path} holds no state dict")
    # DataParallel training saved every key as 'module.<name>'.
    state = {key.removeprefix("module."): value for key, value in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise StartupError(f"tagger: checkpoint {path} does not fit a Places365 ResNet50: {exc}") from exc


class PlacesTagger:
    """ResNet50/Places365 -> tags. ``preprocess`` per image, ``probabilities`` per batch."""

    def __init__(
        self, net: torch.nn.Module, labels: PlacesLabels, device: torch.device, runtime: str = "eager"
    ) -> None:
        out_features = getattr(getattr(net, "fc", None), "out_features", None)
        if out_features is not None and out_features != len(labels):
            raise StartupError(
                f"tagger: the model has {out_features} classes, the category file {len(labels)}"
            )
        self.net = net.eval().to(device)
        self.labels = labels
        self.device = device
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        self.runtime = runtime
        self.tower = build_image_tower(
            self.net, runtime, torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=device)
        )

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        # trn.Resize((224, 224)) on a PIL image in CSAIL's script: PIL bilinear, aspect not kept.
        small = image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (pixels - self.mean) / self.std

    @torch.inference_mode()
    def probabilities(self, pixels: torch.Tensor) -> np.ndarray:
        """(N, 3, 224, 224) -> (N, 365) softmax probabilities."""
        logits = self.tower(pixels.to(self.device))
        return torch.softmax(logits, dim=1).cpu().numpy()

    def tags(self, probs: np.ndarray, threshold: float, max_tags: int = 0) -> list[str]:
        """Categories with probability > threshold, best first (at most ``max_tags``, 0 = all),
        then "indoor" or "outdoor"; no duplicates."""
        order = np.argsort(-probs, kind="stable")
        out: list[str] = []
        for idx in order:
            if probs[idx] <= threshold or (max_tags and len(out) >= max_tags):
                break
            name = self.labels.names[idx]
            if name not in out:
                out.append(name)
        io = "indoor" if float(np.mean(self.labels.outdoor[order[:IO_VOTERS]])) < 0.5 else "outdoor"
        if io not in out:
            out.append(io)
        return out

    def top_categories(self, probs: np.ndarray, k: int) -> Sequence[tuple[str, float]]:
        order = np.argsort(-probs, kind="stable")[:k]
        return [(self.labels.names[i], float(probs[i])) for i in order]

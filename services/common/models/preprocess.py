"""A model's eval preprocessing as plain data, replayed with PIL and numpy (no torch).

The ONNX runtime of a model service (:mod:`.onnx_tower`) serves from a process that never imports
torch, yet must feed the exported graph the pixels the torchvision transform would have made.
:func:`describe_transform` (run where torch is, at export time) turns the transform timm or
open_clip builds into a :class:`PreprocessPlan`: its PIL steps (``resize``, ``center_crop``,
``convert``) and the normalisation. :meth:`PreprocessPlan.pixels` replays the PIL steps exactly as
torchvision does them on PIL images (same output size arithmetic, same ``Image.resize`` call, same
crop box and padding), so the uint8 pixels are identical; :meth:`PreprocessPlan.normalise` is
ToTensor + Normalize in float32 numpy. A transform with any other step is refused at export time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class PreprocessPlan:
    #: ``{"op": "resize", "size": [s] or [h, w], "interpolation": name, "max_size": int | None}``,
    #: ``{"op": "center_crop", "size": [h, w]}``, ``{"op": "convert", "mode": "RGB"}``.
    steps: list[dict[str, Any]] = field(default_factory=list)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessPlan:
        return cls(list(data["steps"]), tuple(data["mean"]), tuple(data["std"]))  # type: ignore[arg-type]

    def pixels(self, image: Image.Image) -> np.ndarray:
        """PIL image -> the model's input pixels, (H, W, 3) uint8."""
        for step in self.steps:
            if step["op"] == "resize":
                image = _resize(image, list(step["size"]), step["interpolation"], step.get("max_size"))
            elif step["op"] == "center_crop":
                image = _center_crop(image, int(step["size"][0]), int(step["size"][1]))
            elif step["op"] == "convert":
                image = image.convert(step["mode"])
            else:
                raise ValueError(f"unknown preprocessing step {step}")
        return np.asarray(image.convert("RGB"), dtype=np.uint8)

    def normalise(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float32: ToTensor then Normalize."""
        x = batch.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255)
        mean = np.asarray(self.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, 3, 1, 1)
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def _resized_size(height: int, width: int, size: list[int], max_size: int | None) -> tuple[int, int]:
    """torchvision's ``_compute_resized_output_size``: (new height, new width)."""
    if len(size) == 2:
        return size[0], size[1]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size[0], int(size[0] * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if width <= height else (new_short, new_long)


def _resize(image: Image.Image, size: list[int], interpolation: str, max_size: int | None) -> Image.Image:
    height, width = _resized_size(image.height, image.width, size, max_size)
    if (height, width) == (image.height, image.width):
        return image
    return image.resize((width, height), _INTERPOLATIONS[interpolation])


def _center_crop(image: Image.Image, crop_h: int, crop_w: int) -> Image.Image:
    """torchvision's ``center_crop`` on a PIL image (zero padding where the image is smaller)."""
    if crop_w > image.width or crop_h > image.height:
        left = (crop_w - image.width) // 2 if crop_w > image.width else 0
        top = (crop_h - image.height) // 2 if crop_h > image.height else 0
        right = (crop_w - image.width + 1) // 2 if crop_w > image.width else 0
        bottom = (crop_h - image.height + 1) // 2 if crop_h > image.height else 0
        padded = Image.new(image.mode, (image.width + left + right, image.height + top + bottom))
        padded.paste(image, (left, top))
        image = padded
        if (image.width, image.height) == (crop_w, crop_h):
            return image
    top = round((image.height - crop_h) / 2.0)
    left = round((image.width - crop_w) / 2.0)
    return image.crop((left, top, left + crop_w, top + crop_h))


def describe_transform(transform: Any) -> PreprocessPlan:
    """The plan of a torchvision eval transform (a Compose of Resize, CenterCrop, an RGB conversion,
    ToTensor, Normalize); ValueError naming the step for anything else."""
    steps_in = list(getattr(transform, "transforms", [transform]))
    steps: list[dict[str, Any]] = []
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    seen_tensor = False
    for step in steps_in:
        kind = type(step).__name__
        if seen_tensor:
            if kind != "Normalize":
                raise ValueError(f"unsupported tensor step after ToTensor: {step}")
            mean = tuple(float(v) for v in step.mean)  # type: ignore[assignment]
            std = tuple(float(v) for v in step.std)  # type: ignore[assignment]
        elif "ToTensor" in kind:
            seen_tensor = True
        elif kind == "Resize":
            size = [step.size] if isinstance(step.size, int) else [int(v) for v in step.size]
            interpolation = getattr(step.interpolation, "value", step.interpolation)
            if interpolation not in _INTERPOLATIONS:
                raise ValueError(f"unsupported interpolation in {step}")
            steps.append(
                {"op": "resize", "size": size, "interpolation": interpolation, "max_size": step.max_size}
            )
        elif kind == "CenterCrop":
            size = [int(v) for v in step.size] if not isinstance(step.size, int) else [step.size, step.size]
            steps.append({"op": "center_crop", "size": size if len(size) == 2 else size * 2})
        elif kind == "MaybeConvertMode":
            steps.append({"op": "convert", "mode": step.mode})
        elif getattr(step, "__name__", "") == "_convert_to_rgb":  # open_clip's plain function
            steps.append({"op": "convert", "mode": "RGB"})
        else:
            raise ValueError(f"unsupported preprocessing step {step!r}")
    if not seen_tensor:
        raise ValueError(f"preprocessing without a ToTensor step is not supported: {transform}")
    return PreprocessPlan(steps, mean, std)

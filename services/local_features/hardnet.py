"""HardNet8 patch descriptors (kornia) and where their weights come from.

Weights: kornia's pretrained ``hardnet8v2`` checkpoint, downloaded once into the models folder
(``<models_dir>/kornia/hardnet8v2.pt``) when the machine is online, or any local file with the
same state dict. Random weights exist for tests only and must be allowed explicitly.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from services.local_features.extraction import CODEC_ROW_INT8, DIM

log = logging.getLogger(__name__)

#: kornia's own sources for the pretrained weights (kornia.feature.hardnet.urls["hardnet8v2"]).
HARDNET8_URLS = (
    "https://huggingface.co/kornia/hardnet/resolve/main/hardnet8v2.pt",
    "https://cmp.felk.cvut.cz/~mishkdmy/hardnet8v2.pt",
)
HARDNET8_FILE = "hardnet8v2.pt"
RANDOM_SEED = 0


class WeightsUnavailable(Exception):
    """No weights file and no way to get one; the message says which file and how to fix it."""


@dataclass(frozen=True)
class WeightsSource:
    path: Path | None  # None: random weights
    digest: str  # sha256 prefix of the file, or "random-seed0"

    @property
    def label(self) -> str:
        return "random" if self.path is None else str(self.path)


def default_weights_path(models_dir: Path) -> Path:
    return models_dir / "kornia" / HARDNET8_FILE


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()[:16]


def download(dest: Path, timeout: float = 30.0) -> Path:
    """Fetch kornia's pretrained HardNet8 weights to ``dest`` (atomic); raises OSError offline."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in HARDNET8_URLS:
        try:
            with (
                urllib.request.urlopen(url, timeout=timeout) as response,
                tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp,
            ):
                shutil.copyfileobj(response, tmp)
            Path(tmp.name).replace(dest)
            log.info("downloaded HardNet8 weights from %s to %s", url, dest)
            return dest
        except OSError as exc:
            errors.append(f"{url}: {exc}")
    raise OSError("; ".join(errors))


def resolve_weights(
    weights: str, models_dir: Path, *, allow_random: bool, allow_download: bool = True
) -> WeightsSource:
    """``weights``: "kornia" (pretrained, downloaded into models_dir), a file path, or "random"."""
    if weights == "random":
        if not allow_random:
            raise WeightsUnavailable(
                "hardnet_weights=random is for tests only; set AMBIENCE_ALLOW_RANDOM_WEIGHTS=1 to allow it"
            )
        return WeightsSource(None, f"random-seed{RANDOM_SEED}")
    path = default_weights_path(models_dir) if weights == "kornia" else Path(weights).expanduser()
    if not path.is_file() and weights == "kornia" and allow_download:
        try:
            download(path)
        except OSError as exc:
            log.warning("cannot download HardNet8 weights: %s", exc)
    if path.is_file():
        return WeightsSource(path, file_digest(path))
    # Never fall back to random weights: results come only from the weights that were asked for.
    raise WeightsUnavailable(
        f"HardNet8 weights file {path} is missing. Fix: run the service once with internet access "
        f"(it downloads {HARDNET8_URLS[0]} to that path), or download that URL there yourself, or set "
        "AMBIENCE_LOCAL_FEATURES_HARDNET_WEIGHTS to a local copy, or use the weight-free descriptor "
        "with AMBIENCE_LOCAL_FEATURES_DESCRIPTOR=rootsift."
    )


def laf_from_keypoints(keypoints: list[cv2.KeyPoint], patch_scale: float) -> torch.Tensor:
    """Local affine frames (1, n, 2, 3) from SIFT keypoints: centre, half-side = patch_scale *
    keypoint radius, SIFT's dominant orientation."""
    from kornia.feature import laf_from_center_scale_ori

    n = len(keypoints)
    xy = torch.tensor([kp.pt for kp in keypoints], dtype=torch.float32).view(1, n, 2)
    radii = [patch_scale * kp.size / 2 for kp in keypoints]
    scale = torch.tensor(radii, dtype=torch.float32).view(1, n, 1, 1)
    # OpenCV measures the angle clockwise in image coordinates (y down); kornia the opposite way.
    angle = torch.tensor([-kp.angle for kp in keypoints], dtype=torch.float32).view(1, n, 1)
    return laf_from_center_scale_ori(xy, scale, angle)


class HardNet8Descriptor:
    kind = "hardnet8"
    codec = CODEC_ROW_INT8

    def __init__(self, source: WeightsSource, patch_scale: float = 6.0, device: str | None = None) -> None:
        from kornia.feature import HardNet8

        self.source = source
        self.patch_scale = patch_scale
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if source.path is None:
            torch.manual_seed(RANDOM_SEED)  # the same random weights in every process
            model = HardNet8(pretrained=False)
        else:
            model = HardNet8(pretrained=False)
            state = torch.load(source.path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            model.load_state_dict(state, strict=True)
        self.model = model.eval().to(self.device)

    @torch.inference_mode()
    def describe(self, image: np.ndarray, keypoints: list[cv2.KeyPoint]) -> np.ndarray:
        from kornia.feature import extract_patches_from_pyramid

        if not keypoints:
            return np.zeros((0, DIM), np.float32)
        img = torch.from_numpy(image).to(self.device, torch.float32).div_(255.0)[None, None]
        laf = laf_from_keypoints(keypoints, self.patch_scale).to(self.device)
        patches = extract_patches_from_pyramid(img, laf, PS=32)[0]  # (n, 1, 32, 32)
        return self.model(patches).float().cpu().numpy()

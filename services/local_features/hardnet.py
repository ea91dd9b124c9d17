"""HardNet8 patch descriptors (kornia).

Weights: kornia's pretrained ``hardnet8v2`` checkpoint, declared in the service's model spec
(``services.local_features.descriptor.MODEL``); the shared model layer
(services/common/models/) downloads it into the models folder
(``<models_dir>/local_features/hardnet8v2.pt``) and resolves the ``hardnet_weights`` setting.
Random weights exist for tests only and must be allowed explicitly.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from services.common.models.weights import RANDOM_SEED, ResolvedWeights
from services.local_features.extraction import CODEC_ROW_INT8, DIM


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

    def __init__(self, weights: ResolvedWeights, patch_scale: float = 6.0, device: str | None = None) -> None:
        from kornia.feature import HardNet8

        self.weights = weights
        self.patch_scale = patch_scale
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if weights.path is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_SEED)  # the same random weights in every process
                model = HardNet8(pretrained=False)
        else:
            model = HardNet8(pretrained=False)
            state = torch.load(weights.path, map_location="cpu", weights_only=True)
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

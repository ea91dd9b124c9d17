"""8x8x8 RGB colour histogram compared by L1 distance.

512 bins (8 levels per channel), scaled so the bins sum to 1e7 (so the histogram does not depend
on image size and distances keep the upstream scale), float32.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

BINS_PER_CHANNEL = 8
DIM = BINS_PER_CHANNEL**3
TOTAL = 1e7


def histogram(rgb: Image.Image) -> np.ndarray:
    """The 512-bin histogram of an RGB image, float32 summing to 1e7."""
    pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    hist = cv2.calcHist([pixels], [0, 1, 2], None, [BINS_PER_CHANNEL] * 3, [0, 256] * 3).ravel()
    return (hist * (TOTAL / max(float(hist.sum()), 1.0))).astype(np.float32)


def l1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).sum())

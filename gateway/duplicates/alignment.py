"""Is one picture a part of another? Two thumbnails aligned by normalised cross-correlation.

Local features verify a crop by the keypoints both pictures share, and a smooth picture (a gradient
wallpaper, a misty sky) has too few for that: an 80% crop of one keeps 4-6 inliers to its source,
no more than unrelated photos reach. Its pixels still say it: scaled to the right size and put in
the right place, the crop's thumbnail correlates with its source's at 0.99 and more, where the
nearest different photo stays below 0.95.

:func:`part_correlation` searches the placement: every uniform scale at which one thumbnail fits
inside the other while covering at least ``min_area`` of it (any crop aspect ratio; a crop is not
stretched), every position, both ways round (the stored picture may be the crop). Coarse first, at a
quarter of the size, then refined around the best scale at full size. Plain numpy and OpenCV on
grey arrays; the gateway feeds it the thumbnails it keeps (gateway/thumbnails.py).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

#: A picture this flat (grey-level standard deviation) has nothing to align: no evidence either way.
MIN_CONTRAST = 2.0
#: The coarse search runs on thumbnails shrunk by this factor.
COARSE_FACTOR = 4
#: Relative step between the scales tried (2.5%: a wrong scale by half a step costs < 0.005 of
#: correlation on a smooth picture).
SCALE_STEP = 0.025


@dataclass(frozen=True)
class Alignment:
    #: Normalised cross-correlation of the best placement, -1..1 (-1: nothing to align).
    correlation: float
    #: True when the second picture is the part (a crop of the first), False for the first.
    second_is_part: bool = False
    #: The factor the part's thumbnail was resized by at the best placement.
    scale: float = 0.0


NO_ALIGNMENT = Alignment(-1.0)


def grey_thumbnail(data: bytes) -> np.ndarray:
    """A stored thumbnail (any format PIL reads) as a float32 grey array."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L"), np.float32)


def _scales(part: tuple[int, int], whole: tuple[int, int], min_area: float) -> np.ndarray:
    """Uniform scale factors of ``part`` (h, w) at which it fits in ``whole`` covering at least
    ``min_area`` of it, largest first, SCALE_STEP apart."""
    largest = min(whole[0] / part[0], whole[1] / part[1])
    smallest = math.sqrt(min_area * whole[0] * whole[1] / (part[0] * part[1]))
    if smallest > largest:
        return np.empty(0)
    count = int(math.log(largest / smallest) / math.log1p(SCALE_STEP)) + 1
    return largest / (1 + SCALE_STEP) ** np.arange(count)


def _best_at(part: np.ndarray, whole: np.ndarray, scales: np.ndarray) -> tuple[float, float]:
    """(best correlation, its scale) of ``part`` resized by each of ``scales`` slid over ``whole``."""
    best, best_scale = -1.0, 0.0
    for scale in scales:
        h = min(whole.shape[0], max(1, round(part.shape[0] * scale)))
        w = min(whole.shape[1], max(1, round(part.shape[1] * scale)))
        if h < 4 or w < 4:
            continue
        template = cv2.resize(part, (w, h), interpolation=cv2.INTER_AREA)
        if float(template.std()) < MIN_CONTRAST:
            continue
        score = float(cv2.matchTemplate(whole, template, cv2.TM_CCOEFF_NORMED).max())
        if math.isfinite(score) and score > best:
            best, best_scale = score, float(scale)
    return best, best_scale


def _shrink(img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    size = (max(1, w // COARSE_FACTOR), max(1, h // COARSE_FACTOR))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _coarse(part: np.ndarray, whole: np.ndarray, min_area: float) -> tuple[float, float]:
    """(correlation, scale) of the best placement of ``part`` in ``whole`` on shrunk arrays."""
    scales = _scales(part.shape, whole.shape, min_area)
    if len(scales) == 0:
        return -1.0, 0.0
    return _best_at(_shrink(part), _shrink(whole), scales)


def part_correlation(first: np.ndarray, second: np.ndarray, min_area: float) -> Alignment:
    """The best placement of ``second`` as a part of ``first`` or ``first`` as a part of
    ``second``, covering at least ``min_area`` of the whole: every scale and both ways round on
    arrays shrunk by COARSE_FACTOR, then the winner refined at full size within half a scale step
    (the coarse search costs a seventh of one full-size scale)."""
    if float(first.std()) < MIN_CONTRAST or float(second.std()) < MIN_CONTRAST:
        return NO_ALIGNMENT
    ways = [(second, first, True), (first, second, False)]
    coarse = [_coarse(part, whole, min_area) for part, whole, _ in ways]
    best = max(range(2), key=lambda n: coarse[n][0])
    score, scale = coarse[best]
    if scale == 0.0:
        return NO_ALIGNMENT
    part, whole, second_is_part = ways[best]
    fine = scale * (1 + SCALE_STEP) ** np.array([-0.5, 0.0, 0.5])
    score, scale = _best_at(part, whole, fine)
    return Alignment(score, second_is_part, scale) if scale else NO_ALIGNMENT

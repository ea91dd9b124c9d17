"""Synthetic pictures with enough texture for SIFT (smooth blobs have almost no keypoints)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ambience_support.images import synthetic_image


def textured_image(seed: int, size: tuple[int, int] = (320, 240), shapes: int = 80) -> Image.Image:
    rng = np.random.default_rng(seed + 7919)
    img = synthetic_image(seed, size)
    draw = ImageDraw.Draw(img)
    w, h = size
    for _ in range(shapes):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.uniform(4, w / 5), y0 + rng.uniform(4, h / 5)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 4)))
    return img

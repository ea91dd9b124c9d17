"""A real face every test machine has, and pictures made from it.

matplotlib (in the test extra) ships a portrait of Grace Hopper in its sample data (a US Navy
photograph, public domain): one frontal face, about 204 px wide in the 512x600 picture. The
faces service's tests run the real dlib weights on it and on pictures made from it: variants whose
descriptors differ by a controlled amount (stretching a face moves its descriptor by ~0.3), the
face pasted at a chosen size into a larger picture, and a crowd of copies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ambience_support.images import synthetic_image

#: The face's box in the portrait (measured with dlib's HOG detector): left, top, right, bottom.
FACE_BOX = (176, 130, 380, 335)
#: Aspect factors of the variants (measured: squeezing the face to 0.6 of its width moves its
#: descriptor ~0.5, to 0.9 ~0.23; the background and position alone ~0.1).
ASPECTS = (0.6, 0.75, 0.9, 1.05, 1.2, 0.7)


def portrait_path() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def portrait() -> Image.Image:
    with Image.open(portrait_path()) as img:
        return img.convert("RGB")


def portrait_variant(seed: int) -> Image.Image:
    """The portrait stretched horizontally by ``ASPECTS[seed % 6]`` on a background of its own: one
    face whose descriptor depends on the aspect (seeds 6 and 9 are ~0.5 apart)."""
    face = portrait()
    aspect = ASPECTS[seed % len(ASPECTS)]
    face = face.resize((round(face.width * aspect), face.height), Image.Resampling.BICUBIC)
    canvas = synthetic_image(seed, (face.width + 80, face.height + 60))
    canvas.paste(face, (40 + seed % 7, 30 + seed % 5))
    return canvas


def face_crop(side: int) -> Image.Image:
    """The portrait cropped around its face (with room for the detector), scaled so that the face
    box is ``side`` px wide."""
    left, top, right, bottom = FACE_BOX
    width = right - left
    margin = width // 2
    crop = portrait().crop((left - margin, top - margin, right + margin, bottom + margin))
    scale = side / width
    return crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.Resampling.BICUBIC)


def pasted(face_side: int, size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A ``size`` picture with the face pasted in its middle at ``face_side`` px."""
    canvas = synthetic_image(seed, size)
    face = face_crop(face_side)
    canvas.paste(face, ((size[0] - face.width) // 2, (size[1] - face.height) // 2))
    return canvas


def crowd(rows: int, columns: int, face_side: int, seed: int = 0, growth: int = 1) -> Image.Image:
    """A grid of ``rows x columns`` copies of the face, each ``growth`` px larger than the one
    before (so "largest first" has an answer), on a synthetic background."""
    cell = int((face_side + growth * rows * columns) * 2.2)
    canvas = synthetic_image(seed, (columns * cell, rows * cell))
    rng = np.random.default_rng(seed)
    face = face_crop(face_side)
    for i in range(rows * columns):
        side = face_side + growth * i
        face = face_crop(side) if growth else face
        x = (i % columns) * cell + int(rng.integers(0, max(1, cell - face.width)))
        y = (i // columns) * cell + int(rng.integers(0, max(1, cell - face.height)))
        canvas.paste(face, (x, y))
    return canvas

"""gateway/duplicates/alignment.py on synthetic smooth pictures: the case local features cannot verify."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from gateway.duplicates.alignment import grey_thumbnail, part_correlation
from gateway.thumbnails import make_thumbnail


def mesh_gradient(seed: int, size: tuple[int, int] = (900, 600)) -> Image.Image:
    """A smooth wallpaper: a few wide coloured blobs blended, no edge anywhere."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w, 3), np.float32)
    weight = np.zeros((h, w, 1), np.float32)
    for blob_index in range(6):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        spread = rng.uniform(0.12, 0.25) * w
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * spread**2))[..., None]
        # dark and light blobs in turn: a wallpaper's range of brightness, not a grey haze
        out += blob * (rng.uniform(0, 90, 3) if blob_index % 2 else rng.uniform(170, 255, 3))
        weight += blob
    return Image.fromarray((out / np.maximum(weight, 1e-6)).clip(0, 255).astype(np.uint8))


def thumb(img: Image.Image) -> np.ndarray:
    """What the gateway aligns: the grey array of its stored WebP thumbnail."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return grey_thumbnail(make_thumbnail(buf.getvalue()))


def crop(img: Image.Image, area: float, left: float, top: float) -> Image.Image:
    side = area**0.5
    cw, ch = round(img.width * side), round(img.height * side)
    x, y = round((img.width - cw) * left), round((img.height - ch) * top)
    return img.crop((x, y, x + cw, y + ch))


def test_a_crop_of_a_smooth_picture_aligns_with_its_source_either_way_round() -> None:
    source = mesh_gradient(1)
    part = crop(source, 0.8, 0.7, 0.2)
    found = part_correlation(thumb(source), thumb(part), min_area=0.5)
    assert found.correlation >= 0.98
    assert found.second_is_part
    # the stored picture may be the crop: the same placement found the other way round
    reverse = part_correlation(thumb(part), thumb(source), min_area=0.5)
    assert reverse.correlation >= 0.98
    assert not reverse.second_is_part


def test_a_crop_that_also_changed_aspect_ratio_and_size_aligns() -> None:
    source = mesh_gradient(2)
    part = source.crop((100, 50, 700, 550)).resize((300, 250))  # 56% of the area, squarer, halved
    assert part_correlation(thumb(source), thumb(part), min_area=0.5).correlation >= 0.98


def test_different_smooth_pictures_do_not_align() -> None:
    scores = [
        part_correlation(thumb(mesh_gradient(a)), thumb(mesh_gradient(b)), min_area=0.5).correlation
        for a, b in ((3, 4), (5, 6), (7, 8))
    ]
    assert max(scores) < 0.98, scores


def test_a_flat_picture_gives_no_evidence() -> None:
    flat = Image.new("RGB", (400, 300), (90, 120, 200))
    found = part_correlation(thumb(flat), thumb(crop(flat, 0.8, 0.5, 0.5)), min_area=0.5)
    assert found.correlation == -1.0

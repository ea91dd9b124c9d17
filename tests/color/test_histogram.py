"""services/color/histogram.py on its own (no HTTP): binning, scale and the L1 distance."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from ambience_support.images import synthetic_image
from services.color.histogram import BINS_PER_CHANNEL, DIM, TOTAL, histogram, l1

STEP = 256 // BINS_PER_CHANNEL


def bin_of(r: int, g: int, b: int) -> int:
    """Bins are row-major over (R, G, B), 32 levels wide."""
    return (r // STEP) * BINS_PER_CHANNEL**2 + (g // STEP) * BINS_PER_CHANNEL + b // STEP


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (16, 16)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def test_shape_dtype_and_total() -> None:
    h = histogram(synthetic_image(3))
    assert h.shape == (DIM,) and h.dtype == np.float32
    assert h.sum() == pytest.approx(TOTAL, rel=1e-5)
    assert (h >= 0).all()


@pytest.mark.parametrize("rgb", [(0, 0, 0), (255, 0, 0), (31, 32, 0), (32, 31, 255), (128, 200, 90)])
def test_a_solid_colour_fills_its_one_bin(rgb: tuple[int, int, int]) -> None:
    h = histogram(solid(rgb))
    assert np.flatnonzero(h).tolist() == [bin_of(*rgb)]
    assert h[bin_of(*rgb)] == pytest.approx(TOTAL)


def test_proportions_not_pixel_counts() -> None:
    half = Image.new("RGB", (20, 10), (255, 255, 255))
    half.paste(solid((0, 0, 0), (10, 10)), (0, 0))
    h = histogram(half)
    assert h[bin_of(0, 0, 0)] == pytest.approx(TOTAL / 2)
    assert h[bin_of(255, 255, 255)] == pytest.approx(TOTAL / 2)
    # the same picture four times larger (nearest-neighbour: the same pixels) has the same histogram
    assert np.allclose(histogram(half.resize((80, 40), Image.Resampling.NEAREST)), h)


def test_pixel_arrangement_does_not_matter() -> None:
    image = synthetic_image(5)
    h = histogram(image)
    assert np.array_equal(histogram(ImageOps.mirror(image)), h)
    assert np.array_equal(histogram(image.rotate(90, expand=True)), h)


def test_l1_bounds() -> None:
    red, blue = histogram(solid((255, 0, 0))), histogram(solid((0, 0, 255)))
    assert l1(red, red) == 0
    assert l1(red, blue) == pytest.approx(2 * TOTAL)  # disjoint: the largest distance there is
    a, b = histogram(synthetic_image(1)), histogram(synthetic_image(2))
    assert 0 < l1(a, b) < 2 * TOTAL
    assert l1(a, b) == pytest.approx(l1(b, a))

"""services/phash/hashing.py on its own (no HTTP): the hash construction, and the DCT sign-flip
identities that let one decode serve mirrored and rotated queries (docs/architecture.md)."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from ambience_support.photos import PHOTOS, photo_paths
from services.phash.hashing import HASH_BYTES, hamming, mirror_hash, phash, phash_variants

#: Rotating by 90 degrees swaps the axes PIL resamples first, and its 8-bit rounding between the
#: two passes moves a few coefficients across the median; unrelated pictures are ~150-300 apart.
ROTATION_TOLERANCE_BITS = 8

#: phash_variants order: identity, mirror, then each rotation and its mirror.
VARIANTS = [
    "identity",
    "mirror",
    "rot90",
    "rot90+mirror",
    "rot180",
    "rot180+mirror",
    "rot270",
    "rot270+mirror",
]


def shapes(seed: int, size: tuple[int, int] = (240, 180)) -> Image.Image:
    """A grey picture of overlapping rectangles: edges at every scale, like a photo."""
    rng = np.random.default_rng(seed)
    image = Image.new("L", size, int(rng.integers(0, 256)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        w, h = int(rng.integers(10, 120)), int(rng.integers(10, 90))
        draw.rectangle([x, y, x + w, y + h], fill=int(rng.integers(0, 256)))
    return image


def transformed(gray: Image.Image, variant: str) -> Image.Image:
    """The picture a variant stands for, made by really transforming the pixels."""
    name, _, mirror = variant.partition("+")
    out = gray.rotate(int(name[3:]), expand=True) if name.startswith("rot") else gray
    return ImageOps.mirror(out) if mirror or name == "mirror" else out


def pictures() -> list[Image.Image]:
    found = [Image.open(p).convert("L") for p in photo_paths(PHOTOS, limit=4)]
    return [shapes(seed) for seed in range(4)] + found


def test_hash_is_imagehash_phash_24() -> None:
    for gray in pictures():
        reference = imagehash.phash(gray, hash_size=24, highfreq_factor=4).hash.ravel()
        assert hamming(phash(gray), np.packbits(reference)) == 0


def test_hash_layout() -> None:
    value = phash(shapes(0))
    assert value.dtype == np.uint8 and value.shape == (HASH_BYTES,)
    assert hamming(value, value) == 0
    assert hamming(np.zeros(HASH_BYTES, np.uint8), np.full(HASH_BYTES, 0xFF, np.uint8)) == HASH_BYTES * 8


@pytest.mark.parametrize("index", range(len(VARIANTS)), ids=VARIANTS)
def test_sign_flipped_block_hashes_like_the_transformed_picture(index: int) -> None:
    variant = VARIANTS[index]
    for gray in pictures():
        flipped = phash_variants(gray, mirror=True, rotations=True)[index]
        rehashed = phash(transformed(gray, variant))
        distance = hamming(flipped, rehashed)
        if variant.startswith(("rot90", "rot270")):
            assert distance <= ROTATION_TOLERANCE_BITS, variant
        else:  # mirrors and the half turn keep each resampling pass on its own axis: exact
            assert distance == 0, variant
        # ... and the variant is a different hash, not the original one again
        if variant != "identity":
            assert hamming(flipped, phash(gray)) > 4 * ROTATION_TOLERANCE_BITS, variant


#: A mirror hashed from the stored bits misses the coefficients between the two medians; the
#: shared photos reach 38 bits, copies are linked within 96.
MIRROR_FROM_BITS_TOLERANCE = 48


def test_the_mirror_of_a_stored_hash_is_near_the_mirrored_pictures_hash() -> None:
    for gray in pictures():
        from_bits = mirror_hash(phash(gray))
        rehashed = phash(ImageOps.mirror(gray))
        assert hamming(from_bits, rehashed) <= MIRROR_FROM_BITS_TOLERANCE
        assert hamming(phash(gray), rehashed) > 2 * MIRROR_FROM_BITS_TOLERANCE  # a real change
        assert hamming(mirror_hash(from_bits), phash(gray)) == 0  # flipping twice is the identity


def test_variant_counts_follow_the_flags() -> None:
    gray = shapes(1)
    assert phash_variants(gray, mirror=False).shape == (1, HASH_BYTES)
    assert phash_variants(gray).shape == (2, HASH_BYTES)
    assert phash_variants(gray, mirror=False, rotations=True).shape == (4, HASH_BYTES)
    assert phash_variants(gray, rotations=True).shape == (8, HASH_BYTES)
    assert hamming(phash_variants(gray)[0], phash(gray)) == 0


def test_unrelated_pictures_are_far_apart() -> None:
    hashes = [phash(shapes(seed)) for seed in range(6)]
    distances = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(distances) > 150

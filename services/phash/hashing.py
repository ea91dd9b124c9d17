"""576-bit DCT perceptual hash.

Grayscale, LANCZOS to 96x96, 2-D DCT-II, keep the top-left 24x24 low-frequency block, compare
each coefficient with the block's median, pack the 576 bits into 72 bytes (row-major, most
significant bit first). Same construction as ``imagehash.phash(hash_size=24, highfreq_factor=4)``.

Mirrored and rotated variants do not need another decode, resize or DCT: flipping the image
horizontally multiplies DCT column v by (-1)^v, flipping vertically multiplies row u by (-1)^u,
and transposing the image transposes the block. All 8 symmetries of the square are such
sign/transposition patterns of the one block (checked against real re-hashing in the tests).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_SIDE = 24
IMAGE_SIDE = 96
HASH_BITS = HASH_SIDE * HASH_SIDE
HASH_BYTES = HASH_BITS // 8


def _dct_basis(n: int, keep: int) -> np.ndarray:
    """Rows k < keep of the (unnormalised) DCT-II matrix; only the ratio between coefficients matters."""
    k = np.arange(keep)[:, None]
    x = np.arange(n)[None, :]
    return np.cos(np.pi * k * (2 * x + 1) / (2 * n))


_BASIS = _dct_basis(IMAGE_SIDE, HASH_SIDE)
_SIGNS = (-1.0) ** np.arange(HASH_SIDE)


def dct_block(gray: Image.Image) -> np.ndarray:
    """The 24x24 low-frequency DCT block of a grayscale image (float64)."""
    small = gray.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    return _BASIS @ pixels @ _BASIS.T


def block_variants(block: np.ndarray, mirror: bool = True, rotations: bool = False) -> np.ndarray:
    """DCT blocks of the image itself, its mirror and (optionally) its 90/180/270 rotations.

    Order: identity, mirror, then rot90, rot180, rot270 and their mirrors.
    """
    hflip = block * _SIGNS[None, :]
    out = [block]
    if mirror:
        out.append(hflip)
    if rotations:
        vflip = block * _SIGNS[:, None]
        rot180 = hflip * _SIGNS[:, None]
        # PIL's rotate(90) is counter-clockwise.
        rot90 = hflip.T
        rot270 = vflip.T
        for rotated in (rot90, rot180, rot270):
            out.append(rotated)
            if mirror:
                out.append(rotated * _SIGNS[None, :])
    return np.stack(out)


def threshold_and_pack(blocks: np.ndarray) -> np.ndarray:
    """Bits of each block above its median, packed MSB-first into bytes: (n, 24, 24) -> (n, 72).

    Plain numpy (576 comparisons per block): a JIT compiler here cost ~100 MB of resident memory
    (LLVM, loaded on the first hash) for no measurable speed."""
    flat = blocks.reshape(blocks.shape[0], -1)
    median = np.median(flat, axis=1, keepdims=True)
    return np.packbits(flat > median, axis=1)


def phash(gray: Image.Image) -> np.ndarray:
    """The 72-byte hash of a grayscale image."""
    return threshold_and_pack(dct_block(gray)[None])[0]


def phash_variants(gray: Image.Image, mirror: bool = True, rotations: bool = False) -> np.ndarray:
    """Hashes of the image and its symmetric variants, shape (n, 72)."""
    blocks = block_variants(dct_block(gray), mirror=mirror, rotations=rotations)
    return threshold_and_pack(np.ascontiguousarray(blocks))


#: Bits of the hash whose DCT column is odd: the ones a horizontal flip negates.
_ODD_COLUMNS = np.tile(np.arange(HASH_SIDE) % 2 == 1, HASH_SIDE)


def mirror_hash(hashed: np.ndarray) -> np.ndarray:
    """The hash of the mirrored image, from the stored hash alone (no pixels): a flip negates the
    odd DCT columns, so their bits invert. Approximate, as the median moves: a coefficient between
    the two medians keeps its bit. On the shared photos 0-38 bits (median 8) from the mirror
    rehashed, while a copy is within 96."""
    bits = np.unpackbits(hashed[:HASH_BYTES])
    bits[_ODD_COLUMNS] ^= 1
    return np.packbits(bits)


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(np.bitwise_xor(a, b)).sum())

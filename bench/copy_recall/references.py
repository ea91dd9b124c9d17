"""Reference near-duplicate detectors run in the same process: imagehash phash/dhash and PDQ.

Each is evaluated like ambience's phash: the query's hash and its mirrored image's hash are both
compared with every stored hash (brute force Hamming), best distance per image, so the references
get the same mirror handling ambience does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

from bench.vectors import distances

HashFn = Callable[[Image.Image], np.ndarray]  # -> packed uint8 bits


def _imagehash(kind: str) -> HashFn:
    import imagehash

    fn = {"phash": imagehash.phash, "dhash": imagehash.dhash}[kind]
    return lambda img: np.packbits(fn(img).hash.ravel())


def _pdq(img: Image.Image) -> np.ndarray:
    import pdqhash

    bits, _quality = pdqhash.compute(np.asarray(img.convert("RGB")))
    return np.packbits(bits.astype(np.uint8))


def available() -> dict[str, HashFn]:
    refs: dict[str, HashFn] = {}
    try:
        refs["imagehash.phash (64 bits)"] = _imagehash("phash")
        refs["imagehash.dhash (64 bits)"] = _imagehash("dhash")
    except ImportError:
        pass
    try:
        import pdqhash  # noqa: F401

        refs["PDQ (256 bits)"] = _pdq
    except ImportError:
        pass
    return refs


class HashIndex:
    """Brute-force Hamming search with mirrored queries."""

    def __init__(self, fn: HashFn) -> None:
        self.fn = fn
        self.ids: list[int] = []
        self.codes: list[np.ndarray] = []

    def add(self, image_id: int, img: Image.Image) -> None:
        self.ids.append(image_id)
        self.codes.append(self.fn(img))

    def search(self, img: Image.Image, k: int) -> list[int]:
        codes = np.stack(self.codes)
        queries = np.stack([self.fn(img), self.fn(ImageOps.mirror(img))])
        d = distances(codes, queries, "hamming").min(0)
        order = np.lexsort((np.array(self.ids), d))[:k]
        return [self.ids[i] for i in order]

"""phash and color benchmarks (issue: foundation).

1. Hashing throughput of the phash service's extract path (reduced-size JPEG decode + DCT hash)
   against imagehash.phash on the same files (full decode), in one run, as a ratio. Also how far
   the reduced decode moves the hash (mean Hamming distance to the full-decode hash).
2. Color: how close the histogram of a reduced decode is to the full decode (L1), compared with the
   distance between different photos.

Search latency of the phash and colour indexes is the scale harness's (``python -m bench.scale_bench``:
parts ``services`` and ``thresholds``).

Usage: python -m bench.phash_color_bench [--photos DIR] [--photos-full DIR]
       [--small]   (4 files per folder: the smoke test's size)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from ambience_support.photos import PHOTOS, PHOTOS_FULL
from bench.timing import machine
from services.color.histogram import histogram
from services.color.service import ColorFeature, ColorSettings
from services.common.images import decode_image
from services.phash.hashing import HASH_BITS, hamming
from services.phash.service import PhashFeature, PhashSettings

LIMIT: int | None = None  # --small: the first few files of each folder


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:LIMIT]


def hashing_throughput(folder: Path) -> None:
    paths = files(folder)
    blobs = [p.read_bytes() for p in paths]  # read once: measure decode + hash, not the disk
    feature = PhashFeature(PhashSettings())
    feature.extract(blobs[0])  # numba compile outside the timing

    def ours() -> list[bytes]:
        return [feature.extract(b) for b in blobs]

    def reference() -> list[imagehash.ImageHash]:
        import io

        return [imagehash.phash(Image.open(io.BytesIO(b)), hash_size=24, highfreq_factor=4) for b in blobs]

    t0 = time.perf_counter()
    our_hashes = ours()
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_hashes = reference()
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref64 = [imagehash.phash(Image.open(p)) for p in paths]  # the library default: 64-bit hash
    t_ref64 = time.perf_counter() - t0
    assert len(ref64) == len(paths)
    drift = [  # the record holds the hash, then its mirror's: the hash is compared
        hamming(feature.vector_from_stored(o), np.packbits(r.hash.ravel()))
        for o, r in zip(our_hashes, ref_hashes, strict=True)
    ]
    mp = np.mean([Image.open(p).size[0] * Image.open(p).size[1] for p in paths]) / 1e6
    n = len(paths)
    print(f"\n### phash hashing throughput: {folder.name} ({n} files, mean {mp:.1f} MP)\n")
    print("| method | images/s | ratio |")
    print("|---|---|---|")
    print(f"| ambience phash (reduced JPEG decode, 576 bits) | {n / t_ours:.1f} | 1.00 |")
    print(
        f"| imagehash.phash(hash_size=24) (full decode, 576 bits) | {n / t_ref:.1f} | {t_ours / t_ref:.2f} |"
    )
    print(f"| imagehash.phash() (full decode, 64 bits) | {n / t_ref64:.1f} | {t_ours / t_ref64:.2f} |")
    print(
        f"\nambience is **{t_ref / t_ours:.1f}x** faster than imagehash at the same hash size. "
        f"Hamming distance between the reduced-decode hash and imagehash's full-decode hash: "
        f"mean {np.mean(drift):.1f}, max {max(drift)} of {HASH_BITS} bits "
        f"(the duplicate threshold is 64)."
    )


def color_decode_size(folder: Path) -> None:
    paths = files(folder)
    feature = ColorFeature(ColorSettings())
    full, reduced = [], []
    for p in paths:
        data = p.read_bytes()
        full.append(histogram(decode_image(data, "RGB").image))
        reduced.append(np.frombuffer(feature.extract(data), np.float32))
    full_a, red_a = np.stack(full), np.stack(reduced)
    self_d = np.abs(full_a - red_a).sum(1)
    cross = np.abs(full_a[:, None, :] - full_a[None, :, :]).sum(2)
    np.fill_diagonal(cross, np.inf)
    cross[cross == 0] = np.inf  # the photo set holds a few byte-identical files
    nearest_other = cross.min(1)
    print(
        f"\n### color: reduced decode (short side >= {feature.settings.decode_size}) vs full decode, "
        f"{folder.name} ({len(paths)} files)\n"
    )
    print(
        f"- L1 between reduced and full histogram: mean {self_d.mean():.0f}, max {self_d.max():.0f} "
        f"(histograms sum to 1e7, so {100 * self_d.mean() / 2e7:.2f}% of the maximum distance 2e7)"
    )
    print(
        f"- L1 from each photo to its nearest *other* photo: median {np.median(nearest_other):.0f}, "
        f"min {nearest_other[np.isfinite(nearest_other)].min():.0f}"
    )
    worse = int((self_d >= nearest_other).sum())
    print(
        f"- photos whose reduced histogram is farther from the full one than the nearest other photo: {worse}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--photos-full", type=Path, default=PHOTOS_FULL)
    parser.add_argument("--small", action="store_true", help="4 files per folder")
    args = parser.parse_args()
    if args.small:
        global LIMIT
        LIMIT = 4
    print(f"Machine: {machine()}")
    for folder in (args.photos_full, args.photos):
        if folder.is_dir():
            hashing_throughput(folder)
    if args.photos.is_dir():
        color_decode_size(args.photos)
    if args.photos_full.is_dir():
        color_decode_size(args.photos_full)


if __name__ == "__main__":
    main()

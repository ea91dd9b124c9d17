"""phash and color benchmarks (issue: foundation).

1. Hashing throughput of the phash service's extract path (reduced-size JPEG decode + DCT hash)
   against imagehash.phash on the same files (full decode), in one run, as a ratio. Also how far
   the reduced decode moves the hash (mean Hamming distance to the full-decode hash).
2. Color: how close the histogram of a reduced decode is to the full decode (L1), compared with the
   distance between different photos.
3. Search latency p50/p95 per query: 1M random 576-bit hashes (FAISS binary flat, mirrored query =
   2 vectors) and 100k colour histograms (FAISS flat L1), against numpy brute force in the same run.

Usage: python -m bench.phash_color_bench [--photos DIR] [--photos-full DIR] [--hashes N] [--hists N]
       [--small]   (4 files per folder, 20k hashes, 10k histograms, 5 queries: the smoke test's size)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from ambience_support.photos import PHOTOS, PHOTOS_FULL
from bench.timing import machine, percentiles_ms
from services.color.histogram import DIM, histogram
from services.color.service import ColorFeature, ColorSettings
from services.common.features.index import VectorIndex, new_binary_flat_index, new_flat_index
from services.common.images import decode_image
from services.phash.hashing import HASH_BITS, HASH_BYTES, hamming
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


def search_latency(n_hashes: int, n_hists: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    print(f"\n### search latency per query (p50 / p95 ms, {repeats} queries)\n")
    print("| collection | query | FAISS (ambience) | numpy brute force | speed-up (p50) |")
    print("|---|---|---|---|---|")

    codes = rng.integers(0, 256, size=(n_hashes, HASH_BYTES), dtype=np.uint8)
    index = VectorIndex(lambda: new_binary_flat_index(HASH_BITS))
    for start in range(0, n_hashes, 100_000):
        chunk = codes[start : start + 100_000]
        index.add(np.arange(start, start + len(chunk), dtype=np.int64), chunk)
    queries = codes[rng.integers(0, n_hashes, 2)]
    popcount = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

    def numpy_knn() -> np.ndarray:
        d = popcount[np.bitwise_xor(codes[None, :, :], queries[:, None, :])].sum(2, dtype=np.uint16)
        return np.argpartition(d.min(0), 10)[:10]

    ours = percentiles_ms(lambda: index.search(queries, 10), repeats)
    ref = percentiles_ms(numpy_knn, max(3, repeats // 10), warmup=1)
    print(
        f"| {n_hashes:,} phash (576 bits) | k=10, query + mirror | {ours['p50']:.1f} / {ours['p95']:.1f} "
        f"| {ref['p50']:.1f} / {ref['p95']:.1f} | {ref['p50'] / ours['p50']:.1f}x |"
    )
    ours_r = percentiles_ms(lambda: index.range_search(queries, 64), repeats)
    print(
        f"| {n_hashes:,} phash (576 bits) | distance <= 64, query + mirror | {ours_r['p50']:.1f} / "
        f"{ours_r['p95']:.1f} | (same scan as above) | {ref['p50'] / ours_r['p50']:.1f}x |"
    )

    hists = rng.dirichlet(np.full(DIM, 0.05), size=n_hists).astype(np.float32) * 1e7
    cindex = VectorIndex(lambda: new_flat_index(DIM, "l1"))
    cindex.add(np.arange(n_hists, dtype=np.int64), hists)
    q = hists[rng.integers(0, n_hists, 1)]

    def numpy_l1() -> np.ndarray:
        d = np.abs(hists - q).sum(1)
        return np.argpartition(d, 10)[:10]

    ours_c = percentiles_ms(lambda: cindex.search(q, 10), repeats)
    ref_c = percentiles_ms(numpy_l1, max(3, repeats // 5), warmup=1)
    print(
        f"| {n_hists:,} colour histograms (512 floats) | k=10 | {ours_c['p50']:.1f} / {ours_c['p95']:.1f} "
        f"| {ref_c['p50']:.1f} / {ref_c['p95']:.1f} | {ref_c['p50'] / ours_c['p50']:.1f}x |"
    )
    thr = float(np.sort(np.abs(hists - q).sum(1))[20])  # a threshold that keeps ~20 results
    ours_cr = percentiles_ms(lambda: cindex.range_search(q, thr), repeats)
    print(
        f"| {n_hists:,} colour histograms (512 floats) | exact distance threshold (~20 hits) | "
        f"{ours_cr['p50']:.1f} / {ours_cr['p95']:.1f} | (same scan as above) | "
        f"{ref_c['p50'] / ours_cr['p50']:.1f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--photos-full", type=Path, default=PHOTOS_FULL)
    parser.add_argument("--hashes", type=int, default=1_000_000)
    parser.add_argument("--hists", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--small", action="store_true", help="20k hashes, 10k histograms, 5 queries")
    args = parser.parse_args()
    if args.small:
        global LIMIT
        args.hashes, args.hists, args.repeats, LIMIT = 20_000, 10_000, 5, 4
    import faiss

    faiss.omp_set_num_threads(1)  # as the services run (SEARCH_THREADS=1)
    print(f"Machine: {machine()}")
    for folder in (args.photos_full, args.photos):
        if folder.is_dir():
            hashing_throughput(folder)
    if args.photos.is_dir():
        color_decode_size(args.photos)
    if args.photos_full.is_dir():
        color_decode_size(args.photos_full)
    search_latency(args.hashes, args.hists, args.repeats)


if __name__ == "__main__":
    main()

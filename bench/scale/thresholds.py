"""Threshold search (every image within a distance, as a duplicate search asks) of phash and color,
against the exhaustive numpy scan, on collections too large to extract here.

The collection is made as in the ``services`` part (``services.py``: rows like the service's real
features of the photos, in the service's own index); the queries are the photos' own query rows (the
mirrored row too, for phash), searched with the service's ``search_vectors`` at a
``distance_threshold``: phash at 64 bits, colour at the distance that keeps about 20 images for the
query. The reference is the exhaustive scan over the same rows, filtered at the same distance, in the
same run; the last column says whether both returned the same images. One FAISS thread per query, as
the services run.
"""

from __future__ import annotations

import argparse

import faiss
import numpy as np

from ambience_support.photos import PHOTOS, photo_paths
from bench.harness import progress, small_note
from bench.scale.services import Sample, make_feature, searching
from bench.timing import percentiles_ms
from bench.vectors import best_distances
from services.common.schemas import SearchParams

#: service -> (collection size, --small size); the phash distance is the duplicate threshold
SIZES = {"phash": (1_000_000, 20_000), "color": (100_000, 10_000)}
PHASH_DISTANCE = 64.0
COLOUR_HITS = 20
log = progress("scale thresholds")


def measure(sample: Sample, n: int, repeats: int, rng: np.random.Generator, service: str) -> str:
    feature = sample.feature
    index, rows, _ = sample.collection(n, rng)
    queries = sample.queries
    with searching(feature, index) as metric:
        if service == "phash":
            threshold, what = PHASH_DISTANCE, f"distance <= {PHASH_DISTANCE:g}, query + mirror"
        else:  # the distance that keeps about COLOUR_HITS images for the first query
            threshold = float(np.sort(best_distances(rows, queries[0], metric))[COLOUR_HITS])
            what = f"exact distance threshold (~{COLOUR_HITS} hits)"
        search = SearchParams(distance_threshold=threshold)
        turn = iter(range(10**9))
        ours = percentiles_ms(
            lambda: feature.search_vectors(queries[next(turn) % len(queries)], search), repeats
        )
        ref = percentiles_ms(
            lambda: np.flatnonzero(best_distances(rows, queries[0], metric) <= threshold),
            max(3, repeats // 10),
            warmup=1,
        )
        same = sum(
            {h["image_id"] for h in feature.search_vectors(q, search)}
            == set(np.flatnonzero(best_distances(rows, q, metric) <= threshold).tolist())
            for q in queries
        )
    log(f"{service} {n:,}: {ours['p50']:.1f} ms, brute force {ref['p50']:.1f} ms, same {same}/{len(queries)}")
    return (
        f"| {n:,} {service} ({index.type_name()}) | {what} | {ours['p50']:.1f} / {ours['p95']:.1f} "
        f"| {ref['p50']:.1f} / {ref['p95']:.1f} | {ref['p50'] / ours['p50']:.1f}x | {same}/{len(queries)} |"
    )


def run(args: argparse.Namespace) -> str:
    repeats = args.repeats or (5 if args.small else 50)
    photos = photo_paths(PHOTOS, 5 if args.small else 20)
    if not photos:
        raise SystemExit(f"no photos in {PHOTOS} (set AMBIENCE_TEST_PHOTOS)")
    rows = []
    for service, (size, small) in SIZES.items():
        feature = make_feature(service, {})  # no model: the default settings
        faiss.omp_set_num_threads(feature.settings.search_threads)  # as the service does
        try:
            sample = Sample.of(feature, photos)
            for n in args.sizes or [small if args.small else size]:
                rows.append(measure(sample, n, repeats, np.random.default_rng(0), service))
        finally:
            feature.close()
    return (
        (small_note("20,000 hashes, 10,000 histograms, 5 queries") if args.small else "")
        + f"Search latency per query (p50 / p95 ms, {repeats} queries, each a photo's own query rows "
        f"among {len(photos)}); same results: the queries for which the service and the exhaustive scan "
        "returned the same images.\n\n"
        "| collection | query | the service's index | numpy brute force | speed-up (p50) | same results |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows)
    )

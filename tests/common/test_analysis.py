"""Collection analysis: the algorithms (services/common/features/analysis.py) on their own, the kit's
/analysis routes on a real service (color), and moment quality on Caltech-101 with real weights."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ambience_support.caltech import CaltechCollection
from ambience_support.images import encode, synthetic_image
from services.color.service import ColorSettings, build_app
from services.common.features import analysis
from services.common.features.analysis_routes import AnalysisCache, Job, reply

#: Left out of day-to-day runs (pytest -m "not slow"): caltech101-dev through a real model.
pytestmark = pytest.mark.slow


def blobs(per_cluster: int, clusters: int, dim: int = 32, spread: float = 0.05, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = analysis.unit_rows(rng.standard_normal((clusters, dim)))
    return np.concatenate([c + spread * rng.standard_normal((per_cluster, dim)) for c in centres]).astype(
        np.float32
    )


# -- algorithms ----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [8, 300])  # one level, and two levels past FLAT_KMEANS_LIMIT
def test_kmeans_moments_recover_separated_clusters(k: int) -> None:
    x = blobs(per_cluster=4 if k > 100 else 40, clusters=k)
    found = analysis.kmeans_moments(x, k)
    truth = np.repeat(np.arange(k), len(x) // k)
    assert sorted(m for c in found.clusters for m in c.members) == list(range(len(x)))
    assert analysis.normalised_mutual_information(analysis.labels_of(found, len(x)), truth) > 0.95
    sizes = [len(c.members) for c in found.clusters]
    assert sizes == sorted(sizes, reverse=True)


def test_members_ordered_by_distance_and_representative_nearest_the_centroid() -> None:
    x = blobs(per_cluster=20, clusters=3)
    for cluster in analysis.kmeans_moments(x, 3).clusters:
        rows = analysis.unit_rows(x[cluster.members])  # 32-d: no projection
        centroid = analysis.unit_rows(rows.sum(0, keepdims=True))[0]
        expected = 1 - rows @ centroid
        assert np.allclose(cluster.distances, expected, atol=1e-5)
        assert cluster.distances == sorted(cluster.distances)


def test_density_moments_put_isolated_rows_in_noise() -> None:
    x = np.concatenate([blobs(per_cluster=30, clusters=2, spread=0.02), blobs(1, 5, seed=9)])
    found = analysis.density_moments(x, eps=0.2, min_samples=3)
    assert len(found.clusters) == 2
    assert sorted(found.noise) == list(range(60, 65))


def test_density_moments_over_the_approximate_graph_agree_with_exact_dbscan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # four clusters of 300 rows (more than the graph's 24 neighbours each) and 12 isolated rows
    x = np.concatenate(
        [blobs(per_cluster=300, clusters=4, dim=96, spread=0.012), blobs(1, 12, dim=96, seed=9)]
    )
    exact = analysis.density_moments(x, eps=0.2, min_samples=3)
    monkeypatch.setattr(analysis, "EXACT_DENSITY_LIMIT", 100)
    approximate = analysis.density_moments(x, eps=0.2, min_samples=3)
    assert len(exact.clusters) == 4 and sorted(exact.noise) == list(range(1200, 1212))
    assert sorted(sorted(c.members) for c in approximate.clusters) == sorted(
        sorted(c.members) for c in exact.clusters
    )
    assert approximate.noise == exact.noise


def test_empty_and_single_collections() -> None:
    empty = np.zeros((0, 8), np.float32)
    assert analysis.kmeans_moments(empty, 3).clusters == []
    assert analysis.density_moments(empty).clusters == []
    one = np.ones((1, 8), np.float32)
    assert [c.members for c in analysis.kmeans_moments(one, 5).clusters] == [[0]]
    assert analysis.density_moments(one, min_samples=2).noise == [0]
    _layout, xy = analysis.fit_layout(one)
    assert xy.shape == (1, 2) and np.isfinite(xy).all()


def test_normalised_mutual_information() -> None:
    nmi = analysis.normalised_mutual_information
    assert nmi(np.array([0, 0, 1, 1]), np.array([5, 5, 7, 7])) == pytest.approx(1.0)
    assert nmi(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == pytest.approx(0.0)
    assert 0 < nmi(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 1, 1, 1, 1])) < 1


def test_connected_components() -> None:
    labels = analysis.connected_components(7, np.array([0, 3, 5, 2]), np.array([1, 4, 6, 6]))
    assert labels.tolist() == [0, 0, 2, 3, 3, 2, 2]


def test_map_keeps_clusters_apart_and_places_new_rows_near_their_cluster() -> None:
    x = blobs(per_cluster=100, clusters=4, dim=96)
    layout, xy = analysis.fit_layout(x, landmarks=60)
    assert xy.shape == (400, 2) and np.abs(xy).max() <= 1.0 + 1e-6
    centres = xy.reshape(4, 100, 2).mean(1)
    within = np.linalg.norm(xy.reshape(4, 100, 2) - centres[:, None], axis=2).mean()
    between = min(np.linalg.norm(centres[i] - centres[j]) for i in range(4) for j in range(i + 1, 4))
    assert between > 3 * within
    new = blobs(per_cluster=5, clusters=4, dim=96, seed=0)[::5]  # one fresh row near each cluster
    placed = layout.place(new + 0.01)
    nearest = np.linalg.norm(placed[:, None] - centres[None], axis=2).argmin(1)
    assert nearest.tolist() == [0, 1, 2, 3]


# -- the kit's routes ----------------------------------------------------------------------------


@pytest.fixture
def color(tmp_path: Path) -> TestClient:
    return TestClient(build_app(ColorSettings(data_dir=tmp_path / "color")))


def add(client: TestClient, image_id: int, seed: int) -> None:
    data = encode(synthetic_image(seed))
    r = client.post(
        "/calculate_color_features", files={"image": ("a.jpg", data)}, data={"image_id": image_id}
    )
    assert r.status_code == 200, r.text


def test_analysis_routes_on_an_empty_collection(color: TestClient) -> None:
    with color:
        r = color.post("/analysis/moments", json={})
        assert r.status_code == 200, r.text
        assert r.json()["moments"] == [] and r.json()["noise"] == []
        assert color.post("/analysis/map").json()["points"] == []
        assert color.post("/analysis/pairs", json={"distance_threshold": 0.5}).json()["pairs"] == []


def test_analysis_routes_cache_per_generation(color: TestClient) -> None:
    with color:
        add(color, 10, seed=1)
        one = color.post("/analysis/moments", json={"granularity": 1}).json()
        assert one["moments"] == [{"members": [10], "distances": [0.0]}] and not one["stale"]
        points = color.post("/analysis/map").json()["points"]
        assert [p["image_id"] for p in points] == [10]
        for i in range(11, 20):
            add(color, i, seed=i)
        add(color, 20, seed=1)  # the same picture as 10
        r = color.post("/analysis/moments", json={"granularity": 0.5}).json()
        assert r["generation"] == r["current_generation"] and r["count"] == 11
        assert sorted(m for moment in r["moments"] for m in moment["members"]) == list(range(10, 21))
        together = next(m["members"] for m in r["moments"] if 10 in m["members"])
        assert 20 in together
        pairs = color.post("/analysis/pairs", json={"distance_threshold": 0.01}).json()["pairs"]
        assert [p[:2] for p in pairs] == [[10, 20]]
        map_reply = color.post("/analysis/map").json()
        assert map_reply["refitted"] and len(map_reply["points"]) == 11


def test_pair_distances_are_the_services_own_search_distances(color: TestClient, tmp_path: Path) -> None:
    from services.phash.service import PhashSettings
    from services.phash.service import build_app as build_phash

    with color, TestClient(build_phash(PhashSettings(data_dir=tmp_path / "phash"))) as phash:
        for client, route in ((color, "color"), (phash, "phash")):
            for image_id, seed in ((1, 1), (2, 2), (3, 3)):
                data = encode(synthetic_image(seed))
                r = client.post(
                    f"/calculate_{route}_features",
                    files={"image": ("a.jpg", data)},
                    data={"image_id": image_id},
                )
                assert r.status_code == 200, r.text
            searched = client.post(f"/{route}_get_similar_images_by_id", json={"image_id": 1, "k": 3}).json()
            expected = {h["image_id"]: h["distance"] for h in searched}
            r = client.post("/analysis/distances", json={"pairs": [[1, 3], [1, 2], [1, 1], [1, 99], [99, 2]]})
            assert r.status_code == 200, r.text
            got = r.json()["distances"]
            assert got[:3] == pytest.approx([expected[3], expected[2], 0.0], rel=1e-5), route
            assert got[3:] == [None, None]
            assert expected[2] > 0 and expected[3] > 0
        assert color.post("/analysis/distances", json={"pairs": [[1]]}).status_code == 422
        too_many = {"pairs": [[1, 2]] * 10_001}
        assert color.post("/analysis/distances", json=too_many).status_code == 422


def test_mirrored_pairs_of_stored_hashes(color: TestClient, tmp_path: Path) -> None:
    """phash mirrors its stored hashes for /analysis/pairs: a mirrored copy pairs with its source
    (as a mirrored query finds it); a service that cannot mirror ignores the flag."""
    from PIL import ImageOps

    from services.phash.service import PhashSettings
    from services.phash.service import build_app as build_phash

    picture = synthetic_image(5)
    images = {1: picture, 2: ImageOps.mirror(picture), 3: synthetic_image(6)}
    with color, TestClient(build_phash(PhashSettings(data_dir=tmp_path / "phash"))) as phash:
        for client, route in ((color, "color"), (phash, "phash")):
            for image_id, img in images.items():
                r = client.post(
                    f"/calculate_{route}_features",
                    files={"image": ("a.jpg", encode(img))},
                    data={"image_id": image_id},
                )
                assert r.status_code == 200, r.text
        plain = phash.post("/analysis/pairs", json={"distance_threshold": 96}).json()["pairs"]
        assert plain == []  # a mirror is ~280 bits from its source, as far as another picture
        mirrored = phash.post("/analysis/pairs", json={"distance_threshold": 96, "mirrored": True}).json()
        assert [p[:2] for p in mirrored["pairs"]] == [[1, 2]]
        assert mirrored["pairs"][0][2] <= 40
        for flag in (False, True):
            body = {"distance_threshold": 0.01, "mirrored": flag}
            assert color.post("/analysis/pairs", json=body).json()["pairs"] == []


def test_analysis_bad_parameters_are_422(color: TestClient) -> None:
    with color:
        assert color.post("/analysis/moments", json={"granularity": 0}).status_code == 422
        assert color.post("/analysis/moments", json={"method": "spectral"}).status_code == 422
        assert color.post("/analysis/pairs", json={}).status_code == 422


def test_requests_during_a_computation_get_202_then_the_previous_result_marked_stale() -> None:
    generation = [1]
    release = threading.Event()

    def compute(job: Job) -> tuple[int, Any]:
        job.progress = 0.5
        release.wait(10)
        return generation[0], {"value": generation[0]}

    cache = AnalysisCache(lambda: generation[0], wait_s=0.05)
    running = cache.get("k", compute)
    assert isinstance(running, Job) and running.progress == 0.5
    response = reply(running, 1)
    assert response.status_code == 202 and json.loads(response.body) == {"status": "running", "progress": 0.5}
    release.set()
    running.done.wait(10)
    assert cache.get("k", compute) == ({"value": 1}, False)
    release.clear()
    generation[0] = 2  # the store changed: recompute, and meanwhile answer with the old result
    assert cache.get("k", compute) == ({"value": 1}, True)
    release.set()
    cache.jobs.get("k", Job()).done.wait(10)
    assert cache.get("k", compute) == ({"value": 2}, False)


# -- quality with real weights -------------------------------------------------------------------


@pytest.mark.timeout(3600)  # the session's caltech extraction: minutes on two busy cores
def test_moments_agree_with_caltech_classes(caltech_lite0: CaltechCollection) -> None:
    classes = np.array(caltech_lite0.labels)
    n_classes = len(set(classes))
    found = analysis.kmeans_moments(caltech_lite0.raw_vectors(), n_classes)
    assert len(found.clusters) == n_classes
    score = analysis.normalised_mutual_information(analysis.labels_of(found, len(classes)), classes)
    assert score >= 0.75, f"NMI {score:.3f} with {n_classes} classes over {len(classes)} images"

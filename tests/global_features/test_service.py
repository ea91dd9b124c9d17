"""global_features over HTTP with random weights (tiny timm model): the standard routes, PCA whitening
(never stacked, persisted, part of the index config), the compressed index, alpha-QE, refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ambience.cli import main as cli_main
from ambience_support.contract import StandardRoutesContract
from ambience_support.images import encode, synthetic_image
from ambience_support.processes import running_service
from ambience_support.tiny_models import TINY_GLOBAL_FEATURES
from services.common.errors import StoreMismatchError
from services.common.features.vectors import alpha_query_expansion, l2_normalize
from services.global_features.service import STATE_FILE, build_app
from services.global_features.settings import GlobalFeaturesSettings
from services.global_features.whitening import train_pca_whitening

#: Left out of day-to-day runs (pytest -m "not slow"): the service's models built and exported.
pytestmark = pytest.mark.slow

TINY = TINY_GLOBAL_FEATURES


@pytest.fixture(autouse=True)
def random_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", "1")


def make_client(data_dir: Path, **overrides: Any) -> TestClient:
    return TestClient(build_app(GlobalFeaturesSettings(data_dir=data_dir, **{**TINY, **overrides})))


def add(client: TestClient, image_id: int, seed: int) -> None:
    r = client.post(
        "/calculate_global_features",
        files={"image": ("a.jpg", encode(synthetic_image(seed)))},
        data={"image_id": str(image_id)},
    )
    assert r.status_code == 200, r.text


def by_id(client: TestClient, image_id: int, **extra: Any) -> list[dict[str, Any]]:
    r = client.post("/global_features_get_similar_images_by_id", json={"image_id": image_id, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def index_rows(client: TestClient, ids: list[int]) -> np.ndarray:
    collection = client.app.state.collection  # type: ignore[attr-defined]
    return np.stack([collection.index.reconstruct(i) for i in ids])


def raw_rows(client: TestClient, ids: list[int]) -> np.ndarray:
    collection = client.app.state.collection  # type: ignore[attr-defined]
    return np.stack([np.frombuffer(collection.store.get(i), np.float32) for i in ids])


class TestGlobalFeaturesRoutes(StandardRoutesContract):
    store_route = "global_features"
    search_route = "global_features"

    @pytest.fixture
    def client(self, tmp_path: Path) -> Iterator[TestClient]:
        with make_client(tmp_path / "gf") as client:
            yield client


def test_whitening_is_applied_once_to_raw_vectors_and_retraining_rebuilds(tmp_path: Path) -> None:
    ids = list(range(30))
    # aqe_n 0: the queries below must be the whitened vectors themselves, not expanded ones.
    with make_client(tmp_path / "gf", pca_min_images=16, aqe_n=0) as client:
        for i in ids:
            add(client, i, seed=i)
        raw = raw_rows(client, ids)
        assert np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-5)
        assert np.allclose(index_rows(client, ids), raw, atol=1e-6)  # untrained: raw vectors

        # force: this test is about how whitening is applied, not whether it helps random weights.
        r = client.post("/train_global_features_pca", json={"dim": 12, "force": True})
        assert r.status_code == 200 and r.json()["dim"] == 12 and r.json()["indexed"] == 30
        expected = train_pca_whitening(raw, 12, GlobalFeaturesSettings().pca_power).apply(raw)
        first = index_rows(client, ids)
        assert np.allclose(first, expected, atol=1e-5)

        # Training again on the same data gives the same rows: nothing is whitened twice.
        assert client.post("/train_global_features_pca", json={"dim": 12, "force": True}).status_code == 200
        assert np.allclose(index_rows(client, ids), first, atol=1e-6)
        # Retraining with other settings re-derives every row from the raw vectors.
        r = client.post("/train_global_features_pca", json={"dim": 6, "power": 0.25, "force": True})
        assert r.status_code == 200
        assert np.allclose(index_rows(client, ids), train_pca_whitening(raw, 6, 0.25).apply(raw), atol=1e-5)
        # Queries are whitened the same way: an image finds itself at distance ~0, by id and by upload.
        assert by_id(client, 7, k=3)[0] == {"image_id": 7, "distance": pytest.approx(0, abs=1e-5)}
        hits = client.post(
            "/global_features_get_similar_images_by_image_buffer",
            files={"image": ("q.jpg", encode(synthetic_image(7)))},
            data={"k": "3"},
        ).json()
        assert hits[0]["image_id"] == 7 and hits[0]["distance"] < 1e-4
        # New images are whitened on the way into the index.
        add(client, 99, seed=99)
        row = index_rows(client, [99])
        assert np.allclose(row, train_pca_whitening(raw, 6, 0.25).apply(raw_rows(client, [99])), atol=1e-5)
        assert client.get("/stats").json()["whitening"]["dim"] == 6

    # Restart: the whitening and the snapshot built with it are reused.
    with make_client(tmp_path / "gf", pca_min_images=16) as client:
        stats = client.get("/stats").json()
        assert stats["index"]["loaded_from"] == "snapshot" and stats["whitening"]["dim"] == 6
        assert np.allclose(index_rows(client, ids), train_pca_whitening(raw, 6, 0.25).apply(raw), atol=1e-5)
    # Without the trained state, the snapshot (built with whitening) is discarded, not reused.
    (tmp_path / "gf" / STATE_FILE).unlink()
    with make_client(tmp_path / "gf") as client:
        stats = client.get("/stats").json()
        assert stats["index"]["loaded_from"] == "rebuild" and stats["whitening"] is None
        assert np.allclose(index_rows(client, ids), raw, atol=1e-6)


def test_training_needs_enough_images(tmp_path: Path) -> None:
    with make_client(tmp_path / "gf") as client:
        for i in range(3):
            add(client, i, seed=i)
        r = client.post("/train_global_features_pca")
        assert r.status_code == 409 and "at least 500" in r.json()["detail"]
        assert client.get("/health").status_code == 200


def test_training_refuses_whitening_that_lowers_its_self_check_unless_forced(tmp_path: Path) -> None:
    """Random-weight vectors of blob pictures: full whitening over every direction scales noise up
    to the level of the signal, which the self-check sees; the reply carries both figures."""
    ids = list(range(40))
    with make_client(tmp_path / "gf", pca_min_images=16) as client:
        for i in ids:
            add(client, i, seed=i)
        raw = raw_rows(client, ids)
        plain = by_id(client, 5, k=10)
        r = client.post("/train_global_features_pca", json={"dim": 39, "power": 0.5})
        assert r.status_code == 200, r.text
        reply = r.json()
        check = reply["self_check"]
        assert check["whitened"] < check["raw"] and check["held_back"] >= 1
        assert reply["switched"] is False and "force" in reply["reason"]
        # Nothing changed: raw rows in the index, same hits, no whitening in /stats.
        assert np.allclose(index_rows(client, ids), raw, atol=1e-6)
        assert by_id(client, 5, k=10) == plain and client.get("/stats").json()["whitening"] is None
        forced = client.post(
            "/train_global_features_pca", json={"dim": 39, "power": 0.5, "force": True}
        ).json()
        assert forced["switched"] is True and forced["self_check"] == check
        assert client.get("/stats").json()["whitening"]["dim"] == forced["dim"]


def test_compressed_index_by_factory_string(tmp_path: Path) -> None:
    with make_client(tmp_path / "gf", index_factory="IVF4,SQ8", nprobe=4, pca_min_images=16) as client:
        for i in range(40):
            add(client, i, seed=i)
        assert client.get("/stats").json()["index"]["type"] == "IndexFlat"  # flat until trained
        r = client.post("/train_global_features_pca", json={"whitening": False})
        assert r.status_code == 200 and r.json()["index"] == "IndexIVFScalarQuantizer"
        hits = by_id(client, 5, k=5)
        assert hits[0]["image_id"] == 5 and len(hits) == 5
        assert client.post("/delete_global_features", json={"image_id": 5}).json()["deleted"] is True
        assert 5 not in [h["image_id"] for h in by_id(client, 6, k=40)]
        add(client, 5, seed=5)
        assert by_id(client, 5, k=1)[0]["image_id"] == 5
    with (
        pytest.raises(Exception, match="not a valid FAISS factory"),
        make_client(tmp_path / "bad", index_factory="IVF4,Nonsense"),
    ):
        pass


def test_alpha_query_expansion_end_to_end(tmp_path: Path) -> None:
    with make_client(tmp_path / "gf", aqe_n=0) as client:  # expansion only where a request asks
        for i in range(12):
            add(client, i, seed=i)
        plain = by_id(client, 3, k=12)
        assert by_id(client, 3, k=12, aqe_n=0) == plain
        # By id the image itself is the query, not one of its n neighbours: n=1 folds in the nearest
        # other image (plain[1]), exactly as the formula says.
        raw = raw_rows(client, list(range(12)))
        q = raw[3:4]
        for n, alpha in ((1, 3.0), (4, 1.0)):
            expanded = by_id(client, 3, k=12, aqe_n=n, aqe_alpha=alpha)
            assert {h["image_id"] for h in expanded} == {h["image_id"] for h in plain}
            itself = next(h for h in expanded if h["image_id"] == 3)
            assert itself["distance"] > 1e-6  # the query moved
            order = [h["image_id"] for h in plain[1 : n + 1]]
            assert 3 not in order
            want = alpha_query_expansion(q, raw[order][None], np.ones((1, n), bool), alpha)
            assert itself["distance"] == pytest.approx(float(((want[0] - raw[3]) ** 2).sum()), abs=1e-5)
        r = client.post(
            "/global_features_get_similar_images_by_id", json={"image_id": 3, "k": 3, "aqe_n": -1}
        )
        assert r.status_code == 422


def test_alpha_query_expansion_default_comes_from_the_settings(tmp_path: Path) -> None:
    with (
        make_client(tmp_path / "on", aqe_n=2, aqe_alpha=3.0) as on,
        make_client(tmp_path / "off", aqe_n=0) as off,
    ):
        for client in (on, off):
            for i in range(8):
                add(client, i, seed=i)
        assert by_id(on, 3, k=8) == by_id(off, 3, k=8, aqe_n=2, aqe_alpha=3.0)
        assert by_id(on, 3, k=8, aqe_n=0) == by_id(off, 3, k=8)
        assert by_id(on, 3, k=8) != by_id(off, 3, k=8)


def test_alpha_query_expansion_matches_the_formula() -> None:
    rng = np.random.default_rng(0)
    q = l2_normalize(rng.normal(size=(3, 8)))
    nb = l2_normalize(rng.normal(size=(3, 4, 8)))
    valid = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], bool)
    got = alpha_query_expansion(q, nb, valid, 3.0)
    for m in range(3):
        acc = q[m].astype(np.float64).copy()
        for n in range(4):
            if valid[m, n]:
                acc += max(0.0, float(q[m] @ nb[m, n])) ** 3 * nb[m, n]
        assert np.allclose(got[m], acc / np.linalg.norm(acc), atol=1e-5)
    assert np.allclose(got[2], q[2], atol=1e-6)


def test_store_refuses_another_model(tmp_path: Path) -> None:
    with make_client(tmp_path / "gf") as client:
        add(client, 1, seed=1)
    with (
        pytest.raises(StoreMismatchError, match="test_efficientnet"),
        make_client(tmp_path / "gf", model="test_efficientnet"),
    ):
        pass


def test_cli_trains_a_running_service(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {
        "AMBIENCE_GLOBAL_FEATURES_MODEL": "test_vit",
        "AMBIENCE_GLOBAL_FEATURES_WEIGHTS": "random",
        "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
        "AMBIENCE_GLOBAL_FEATURES_PCA_MIN_IMAGES": "16",
    }
    with running_service(
        "services.global_features", "AMBIENCE_GLOBAL_FEATURES_", tmp_path / "gf", extra_env=env
    ) as svc:
        import httpx

        for i in range(20):
            r = httpx.post(
                svc.url + "/calculate_global_features",
                data={"image_id": str(i)},
                files={"image": ("a.jpg", encode(synthetic_image(i)))},
            )
            assert r.status_code == 200
        assert cli_main(["train", "global_features", "--url", svc.url, "--dim", "8", "--force"]) == 0
        assert '"dim": 8' in capsys.readouterr().out
        assert httpx.get(svc.url + "/stats").json()["whitening"]["dim"] == 8
        assert cli_main(["train", "global_features", "--url", svc.url, "--dim", "0"]) == 1  # 422 reported


def test_real_default_architecture_builds() -> None:
    """BEiT-base (the default) built once with random weights: 768-d unit vectors."""
    import torch

    from services.common.models.weights import ResolvedWeights
    from services.global_features.model import TimmSession
    from services.global_features.settings import DEFAULT_MODEL

    session = TimmSession(
        DEFAULT_MODEL, ResolvedWeights("random", None, "random-seed0", "random"), torch.device("cpu")
    )
    assert session.dim == 768 and session.input_size == (3, 224, 224)
    vec = session.embed_images(session.preprocess(synthetic_image(1))[None])
    assert vec.shape == (1, 768) and abs(float(np.linalg.norm(vec)) - 1) < 1e-5

"""local_features: standard routes, its own semantics, training, durability, HardNet8 plumbing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from ambience_support.contract import StandardRoutesContract
from ambience_support.images import encode
from ambience_support.processes import ServiceProcess
from ambience_support.textured import textured_image
from services.common.errors import StartupError, WeightsMissingError
from services.local_features.extraction import (
    CODEC_ROW_INT8,
    Features,
    decode_record,
    encode_record,
)
from services.local_features.service import LocalFeatures, LocalFeaturesSettings, build_app

#: Left out of day-to-day runs (pytest -m "not slow"): kill -9 and index training in service processes.
pytestmark = pytest.mark.slow

ENV = "AMBIENCE_LOCAL_FEATURES_"
SEARCH = "/local_features_get_similar_images_by_image_buffer"


#: A small index layout keeps training to seconds (the default is chosen by collection size).
SMALL_FACTORY = "OPQ16_64,IVF32,PQ16np"


def rootsift_settings(data_dir: Path, **kw: Any) -> LocalFeaturesSettings:
    kw.setdefault("index_factory", SMALL_FACTORY)
    kw.setdefault("opq_iterations", 4)
    return LocalFeaturesSettings(data_dir=data_dir, descriptor="rootsift", **kw)


def add(client: Any, image_id: int, img: Image.Image) -> Any:
    return client.post(
        "/calculate_local_features",
        files={"image": ("a.jpg", encode(img, quality=92))},
        data={"image_id": str(image_id)},
    )


def search(client: Any, img: Image.Image, **form: Any) -> Any:
    form.setdefault("k", 5)
    return client.post(
        SEARCH, files={"image": ("q.jpg", encode(img, quality=92))}, data={k: str(v) for k, v in form.items()}
    )


class TestLocalFeaturesRoutes(StandardRoutesContract):
    store_route = "local_features"
    search_route = "local_features"

    def image(self, seed: int) -> Image.Image:
        return textured_image(seed, self.image_size)

    @pytest.fixture
    def client(self, tmp_path: Path) -> Iterator[TestClient]:
        with TestClient(build_app(rootsift_settings(tmp_path / "lf"))) as client:
            yield client

    def test_unusual_but_valid_images_are_accepted(self, client: Any) -> None:
        # Local features return verified matches only, so the unrelated picture must be absent
        # (the generic contract expects every stored image to be ranked).
        base = self.image(6)
        rgb16 = np.asarray(base.convert("L"), dtype=np.uint16) * 257
        frames = [base, self.image(7), self.image(8)]
        rgba = base.copy()
        rgba.putalpha(255)
        variants = [
            encode(base.convert("CMYK"), "JPEG", quality=95),
            encode(Image.fromarray(rgb16), "PNG"),
            encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
            encode(rgba, "PNG"),
            encode(base, "WEBP"),
            encode(base, "BMP"),
            encode(base, "TIFF"),
        ]
        assert self.add(client, 1499, encode(self.image(9))).status_code == 200
        for i, data in enumerate(variants):
            assert self.add(client, 1400 + i, data).status_code == 200
        hits = [h["image_id"] for h in self.by_image(client, encode(base), k=10).json()]
        assert {1400, 1401, 1402, 1403, 1404, 1405, 1406} <= set(hits)
        assert 1499 not in hits
        self.assert_alive(client)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(build_app(rootsift_settings(tmp_path / "lf"))) as client:
        yield client


def test_image_id_limit_is_2_to_53(client: TestClient) -> None:
    img = textured_image(1)
    r = add(client, 2**53, img)
    assert r.status_code == 422 and "image_id" in r.text
    assert add(client, 2**53 - 1, img).status_code == 200
    hits = search(client, img).json()
    assert hits[0]["image_id"] == 2**53 - 1
    body = {"image_id": 2**53 - 1, "k": 3}
    by_id = client.post("/local_features_get_similar_images_by_id", json=body).json()
    assert by_id[0]["image_id"] == 2**53 - 1
    assert client.post("/delete_local_features", json={"image_id": 2**53 - 1}).json()["deleted"] is True
    assert search(client, img).json() == []


def test_response_shape_and_distance_threshold(client: TestClient) -> None:
    base = textured_image(10, (480, 360))
    assert add(client, 1, base).status_code == 200
    assert add(client, 2, textured_image(11, (480, 360))).status_code == 200
    crop = base.crop((60, 40, 400, 300))
    hits = search(client, crop, k=5).json()
    assert [h["image_id"] for h in hits] == [1]
    assert set(hits[0]) == {"image_id", "matches"} and hits[0]["matches"] >= 10
    # distance_threshold = the minimum inlier count (more matches = closer).
    matches = hits[0]["matches"]
    r = client.post(
        SEARCH,
        files={"image": ("q.jpg", encode(crop, quality=92))},
        data={"distance_threshold": str(matches)},
    )
    assert [h["image_id"] for h in r.json()] == [1]
    r = client.post(
        SEARCH,
        files={"image": ("q.jpg", encode(crop, quality=92))},
        data={"distance_threshold": str(matches + 1000)},
    )
    assert r.status_code == 200 and r.json() == []


def test_min_matches_is_the_threshold_and_distance_threshold_its_alias(client: TestClient) -> None:
    base = textured_image(10, (480, 360))
    assert add(client, 1, base).status_code == 200
    assert add(client, 2, textured_image(11, (480, 360))).status_code == 200
    crop = encode(base.crop((60, 40, 400, 300)), quality=92)

    def by_image(**form: object) -> Any:
        return client.post(
            SEARCH, files={"image": ("q.jpg", crop)}, data={k: str(v) for k, v in form.items()}
        )

    matches = by_image(k=5).json()[0]["matches"]
    assert by_image(min_matches=matches).json() == by_image(distance_threshold=matches).json()
    assert [h["image_id"] for h in by_image(min_matches=matches).json()] == [1]
    assert by_image(min_matches=matches + 1000).json() == []
    by_id = client.post("/local_features_get_similar_images_by_id", json={"image_id": 1, "min_matches": 1})
    assert by_id.status_code == 200 and by_id.json()[0]["image_id"] == 1
    # one threshold only, at least one match, and never together with k
    assert by_image(min_matches=5, distance_threshold=6).status_code == 422
    assert by_image(min_matches=5, distance_threshold=5).status_code == 200
    assert by_image(min_matches=0).status_code == 422
    assert by_image(min_matches=5, k=3).status_code == 422
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    form = next(s for name, s in schema.items() if "search_form" in name)
    assert "min_matches" in form["properties"]
    assert "Alias of min_matches" in form["properties"]["distance_threshold"]["description"]


def test_by_id_includes_itself_first(client: TestClient) -> None:
    base = textured_image(13, (480, 360))
    add(client, 5, base)
    add(client, 6, base.crop((0, 0, 360, 300)))
    add(client, 7, textured_image(14, (480, 360)))
    hits = client.post("/local_features_get_similar_images_by_id", json={"image_id": 5, "k": 10}).json()
    assert [h["image_id"] for h in hits] == [5, 6]
    assert hits[0]["matches"] >= hits[1]["matches"]
    one = client.post("/local_features_get_similar_images_by_id", json={"image_id": 5, "k": 1}).json()
    assert [h["image_id"] for h in one] == [5]


def test_mirrored_query(client: TestClient) -> None:
    base = textured_image(15, (480, 360))
    add(client, 1, base)
    mirror = ImageOps.mirror(base.crop((40, 20, 440, 340)))
    assert search(client, mirror).json() == []
    hits = search(client, mirror, mirrored=1).json()
    assert [h["image_id"] for h in hits] == [1]


@pytest.mark.parametrize(
    ("label", "img"),
    [
        ("flat grey", Image.new("RGB", (300, 200), (128, 128, 128))),
        ("tiny", Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 12, 3), dtype=np.uint8))),
        (
            "one straight edge",
            Image.fromarray(
                np.repeat(np.r_[np.zeros(100), np.full(100, 255)][None], 150, 0).astype(np.uint8)
            ).convert("RGB"),
        ),
    ],
)
def test_degenerate_images_give_empty_results(client: TestClient, label: str, img: Image.Image) -> None:
    assert search(client, img).json() == [], label  # empty index
    add(client, 1, textured_image(16))
    r = search(client, img)
    assert r.status_code == 200 and r.json() == [], label
    assert add(client, 2, img).status_code == 200, label  # stored with (almost) no keypoints
    hits = client.post("/local_features_get_similar_images_by_id", json={"image_id": 2, "k": 3}).json()
    assert hits[0]["image_id"] == 2 and all(h["image_id"] != 1 for h in hits), label


def test_hardnet_record_quantisation_is_close() -> None:
    rng = np.random.default_rng(0)
    desc = rng.normal(size=(50, 128)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    xy = rng.uniform(0, 800, (50, 2)).astype(np.float32)
    record = encode_record(Features(xy, desc, (800, 600)), CODEC_ROW_INT8)
    back = decode_record(record)
    assert len(record) == 8 + 50 * (4 + 128 + 2)  # header + xy float16 + codes + scale
    assert np.min(np.sum(back.descriptors * desc, axis=1)) > 0.999
    assert np.abs(back.xy - xy).max() <= 0.25
    # Nearest neighbours survive quantisation.
    assert np.array_equal((desc @ desc.T).argsort(1)[:, -2], (back.descriptors @ desc.T).argsort(1)[:, -2])


# -- training ------------------------------------------------------------------------------------------


def fill(client: Any, count: int, size: tuple[int, int] = (640, 480), start: int = 0) -> list[Image.Image]:
    images = [textured_image(100 + i, size, shapes=250) for i in range(start, start + count)]
    for i, img in enumerate(images):
        assert add(client, start + i, img).status_code == 200
    return images


def test_training_swaps_in_a_compressed_index_that_survives_restart(tmp_path: Path) -> None:
    settings = rootsift_settings(tmp_path / "lf")
    with TestClient(build_app(settings)) as client:
        r = client.post("/train_local_features_index")
        assert r.status_code == 409 and "descriptors" in r.json()["detail"]  # nothing stored yet
        images = fill(client, 16)
        assert client.get("/stats").json()["index_trained"] is False
        bad = client.post("/train_local_features_index", json={"factory": "NotAFactory"})
        assert bad.status_code == 422
        errors: list[Any] = []
        stop = threading.Event()

        def keep_searching() -> None:
            while not stop.is_set():
                r = search(client, images[3].crop((100, 80, 540, 400)), k=3)
                if r.status_code != 200 or not r.json() or r.json()[0]["image_id"] != 3:
                    errors.append(r.text)

        searcher = threading.Thread(target=keep_searching)
        searcher.start()
        try:
            r = client.post("/train_local_features_index")
        finally:
            stop.set()
            searcher.join()
        assert r.status_code == 200, r.text
        assert not errors
        info = r.json()
        assert info["entries"] == client.get("/stats").json()["index"]["entries"] > 2000
        assert client.get("/stats").json()["index_trained"] is True
        assert search(client, images[5].crop((50, 50, 500, 400))).json()[0]["image_id"] == 5
        assert client.post("/delete_local_features", json={"image_id": 5}).json()["deleted"]
        assert all(h["image_id"] != 5 for h in search(client, images[5]).json())
        assert add(client, 100, images[5]).status_code == 200  # added into the trained index
        assert search(client, images[5]).json()[0]["image_id"] == 100
    with TestClient(build_app(settings)) as client:
        stats = client.get("/stats").json()
        assert stats["index_trained"] is True and stats["index"]["loaded_from"] == "snapshot"
        assert stats["training"]["state"] == "idle"
        assert search(client, images[7].crop((0, 0, 400, 300))).json()[0]["image_id"] == 7
    (tmp_path / "lf" / "index.snapshot").unlink()  # a rebuild from the store reuses the trained structure
    with TestClient(build_app(settings)) as client:
        stats = client.get("/stats").json()
        assert stats["index_trained"] is True and stats["index"]["loaded_from"] == "rebuild"
        assert search(client, images[7].crop((0, 0, 400, 300))).json()[0]["image_id"] == 7


# -- real processes: kill -9 --------------------------------------------------------------------------


def proc(tmp_path: Path, **env: str) -> ServiceProcess:
    return ServiceProcess(
        "services.local_features",
        ENV,
        tmp_path / "lf",
        extra_env={
            f"{ENV}DESCRIPTOR": "rootsift",
            f"{ENV}INDEX_FACTORY": SMALL_FACTORY,
            f"{ENV}OPQ_ITERATIONS": "4",
            **{ENV + k: v for k, v in env.items()},
        },
    )


@contextmanager
def restarted_then_killed(tmp_path: Path) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    """The service started again on the same data dir: a client and its first /stats; kill -9 after."""
    svc = proc(tmp_path).start()
    try:
        with httpx.Client(base_url=svc.url, timeout=60) as client:
            yield client, client.get("/stats").json()
    finally:
        svc.kill()


def test_acknowledged_writes_survive_kill_9_and_so_does_the_old_index_during_training(tmp_path: Path) -> None:
    svc = proc(tmp_path, KMEANS_ITERATIONS="100000").start()
    try:
        images = fill(httpx.Client(base_url=svc.url, timeout=60), 16)
        client = httpx.Client(base_url=svc.url, timeout=60)
        assert client.post("/delete_local_features", json={"image_id": 2}).json()["deleted"]
        # Start a (deliberately slow) training, kill -9 the service while it trains.
        cut_off: list[httpx.TransportError] = []

        def train() -> None:
            try:
                httpx.post(svc.url + "/train_local_features_index", timeout=120)
            except httpx.TransportError as exc:  # the kill below ends it unanswered
                cut_off.append(exc)

        trainer = threading.Thread(target=train, daemon=True)
        trainer.start()
        deadline = time.monotonic() + 60
        while client.get("/stats").json()["training"].get("phase") != "training":
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        svc.kill()
    trainer.join(30)
    assert cut_off, "the training request was answered before the kill"
    with restarted_then_killed(tmp_path) as (client, stats):
        assert stats["count"] == 15 and stats["index_trained"] is False
        hits = search(client, images[4].crop((80, 60, 560, 420))).json()
        assert hits[0]["image_id"] == 4
        assert all(h["image_id"] != 2 for h in search(client, images[2]).json())
        # Train to completion, kill -9 right after: the trained index is what comes back.
        assert client.post("/train_local_features_index", timeout=300).status_code == 200
        assert add(client, 50, images[2]).status_code == 200
    with restarted_then_killed(tmp_path) as (client, stats):
        assert stats["count"] == 16 and stats["index_trained"] is True
        assert search(client, images[2]).json()[0]["image_id"] == 50


# -- HardNet8 ------------------------------------------------------------------------------------------


def test_hardnet8_with_random_weights_runs_end_to_end(tmp_path: Path, monkeypatch: Any) -> None:
    """Plumbing only: random weights say nothing about quality (that needs kornia's pretrained
    hardnet8v2 weights, downloaded when online or given as a local file)."""
    monkeypatch.setenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", "1")
    settings = LocalFeaturesSettings(
        data_dir=tmp_path / "lf", descriptor="hardnet8", hardnet_weights="random"
    )
    base = textured_image(20, (480, 360))
    with TestClient(build_app(settings)) as client:
        assert client.get("/health").json()["weights"] == "random"
        stats = client.get("/stats").json()
        assert stats["weights"] == "random" and stats["store"]["metadata"]["descriptor"] == "hardnet8"
        assert add(client, 1, base).status_code == 200
        assert add(client, 2, textured_image(21, (480, 360))).status_code == 200
        hits = search(client, base, k=5).json()
        assert hits[0]["image_id"] == 1 and hits[0]["matches"] >= 10
        by_id = client.post("/local_features_get_similar_images_by_id", json={"image_id": 1, "k": 2}).json()
        assert by_id[0]["image_id"] == 1
    # The same data dir refuses a RootSIFT configuration.
    other = build_app(rootsift_settings(tmp_path / "lf"))
    with pytest.raises(Exception, match="descriptor"), TestClient(other):
        pass


def test_missing_hardnet_weights_refuse_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", raising=False)
    monkeypatch.setenv("AMBIENCE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("AMBIENCE_DOWNLOAD_MODELS", "0")
    service = LocalFeatures(LocalFeaturesSettings(data_dir=tmp_path / "lf"))
    target = tmp_path / "models" / "local_features" / "hardnet8v2.pt"
    with pytest.raises(WeightsMissingError) as info:
        service.load()
    message = str(info.value)
    for fix in (str(target), "ambience models fetch local_features", f"{ENV}HARDNET_WEIGHTS", "rootsift"):
        assert fix in message
    svc = ServiceProcess("services.local_features", ENV, tmp_path / "lf2")
    with pytest.raises(RuntimeError, match="exited with 2"):
        svc.start()


def test_missing_weights_never_fall_back_to_random(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Even where random weights are allowed (tests), they must be asked for by name.
    monkeypatch.setenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", "1")
    monkeypatch.setenv("AMBIENCE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("AMBIENCE_DOWNLOAD_MODELS", "0")
    for weights in ("kornia", str(tmp_path / "absent.pt")):
        service = LocalFeatures(LocalFeaturesSettings(data_dir=tmp_path / "lf", hardnet_weights=weights))
        with pytest.raises(WeightsMissingError, match=r"missing|does not exist"):
            service.load()


def test_hardnet_weights_from_a_local_file_keep_the_digest_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state-dict file is loaded strictly; the store records its sha256 prefix (16 hex digits)."""
    import hashlib

    import torch
    from kornia.feature import HardNet8

    path = tmp_path / "my-hardnet8.pt"
    torch.save(HardNet8(pretrained=False).state_dict(), path)
    settings = LocalFeaturesSettings(data_dir=tmp_path / "lf", hardnet_weights=str(path))
    with TestClient(build_app(settings)) as client:
        stats = client.get("/stats").json()
    assert stats["weights"] == str(path)
    assert stats["store"]["metadata"]["weights"] == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    # A file that is not a HardNet8 state dict is refused, not half-loaded.
    torch.save({"conv.weight": torch.zeros(1)}, path)
    bad = LocalFeatures(LocalFeaturesSettings(data_dir=tmp_path / "lf3", hardnet_weights=str(path)))
    with pytest.raises(StartupError, match="cannot load HardNet8 weights"):
        bad.load()

"""``ambience import``: same bytes and results as HTTP, failures reported, resumable, live pickup.

Real parts throughout: the CLI runs as a subprocess (so it can be SIGKILLed), services run as
real processes (ambience_support.processes.ServiceProcess) or ASGI apps, stores are real LMDB.
"""

from __future__ import annotations

import csv
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from ambience.cli import main as cli_main
from ambience.importer import (
    FAILURES_CSV,
    IDS_CSV,
    IdMapping,
    ImportRefused,
    _ImportLock,
    build_feature,
    ids_from_filenames,
    run_import,
    scan_folder,
    service_classes,
)
from ambience_support.images import encode, png_bomb, synthetic_image
from ambience_support.photos import PHOTOS, REPO
from ambience_support.processes import ServiceProcess, ambience_command
from services.color.service import ColorFeature, ColorSettings
from services.color.service import build_app as build_color_app
from services.common.features.store import FeatureStore
from services.common.images import DecodedImage
from services.phash.hashing import phash_variants
from services.phash.service import PhashFeature, PhashSettings

#: Left out of day-to-day runs (pytest -m "not slow"): bulk imports beside running services.
pytestmark = pytest.mark.slow

PHASH = ("services.phash", "AMBIENCE_PHASH_")


def run_cli(*args: str, data_dir: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AMBIENCE_PHASH_DATA_DIR": str(data_dir)}
    return subprocess.run(
        ambience_command("import", "phash", *args),
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


@contextmanager
def opened_store(data_dir: Path, feature: Any) -> Iterator[FeatureStore]:
    """The feature's store in ``data_dir``, opened as the service opens it (metadata checked)."""
    store = FeatureStore(data_dir, feature.metadata())
    try:
        yield store
    finally:
        store.close()


def stored_items(data_dir: Path, feature: Any) -> dict[int, bytes]:
    with opened_store(data_dir, feature) as store:
        _, batches = store.snapshot_items()
        return {image_id: value for batch in batches for image_id, value in batch}


def read_mapping(data_dir: Path) -> list[tuple[int, str]]:
    with (data_dir / IDS_CSV).open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image_id", "path"]
    return [(int(image_id), path) for image_id, path in rows[1:]]


def upload_all(client: httpx.Client | TestClient, route: str, files: list[tuple[int, Path]]) -> None:
    for image_id, path in files:
        r = client.post(
            f"/calculate_{route}",
            files={"image": (path.name, path.read_bytes())},
            data={"image_id": str(image_id)},
        )
        assert r.status_code == 200, (path, r.text)


def assert_same_ranking(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    """Equal results; within the last distance of a k-search, ties may be cut differently
    (which tied image makes the top k depends on index insertion order)."""
    assert [h["distance"] for h in a] == [h["distance"] for h in b]
    if not a:
        return
    last = a[-1]["distance"]
    assert [h for h in a if h["distance"] != last] == [h for h in b if h["distance"] != last]


def search_pair(
    url_or_client: Any, other: Any, search_route: str, queries: list[Path], ids: list[int]
) -> None:
    """Same by-image (k and threshold) and by-id answers from both services."""
    for path in queries:
        data = path.read_bytes()
        for form in ({"k": "10"}, {"distance_threshold": "120"}):
            answers = [
                c.post(
                    f"/{search_route}_get_similar_images_by_image_buffer",
                    files={"image": ("q.jpg", data)},
                    data=form,
                ).json()
                for c in (url_or_client, other)
            ]
            if "k" in form:
                assert_same_ranking(*answers)
            else:
                assert answers[0] == answers[1]
    for image_id in ids:
        answers = [
            c.post(f"/{search_route}_get_similar_images_by_id", json={"image_id": image_id, "k": 10}).json()
            for c in (url_or_client, other)
        ]
        # the image itself first, or tied at 0 with a mirrored copy (a by-id search matches mirrors)
        assert {"image_id": image_id, "distance": 0} in [h for h in answers[0] if h["distance"] == 0]
        assert_same_ranking(*answers)


# -- folders ------------------------------------------------------------------------------------------


def _thumbnail(path: Path, side: int) -> Image.Image:
    img = Image.open(path)
    img.draft("RGB", (side, side))
    img = ImageOps.exif_transpose(img).convert("RGB")
    img.thumbnail((side, side))
    return img


_TRANSFORMS = [
    lambda im: im,
    lambda im: ImageOps.mirror(im),
    lambda im: im.rotate(90, expand=True),
    lambda im: im.rotate(7, resample=Image.Resampling.BILINEAR),
    lambda im: im.crop((im.width // 10, im.height // 10, im.width, im.height)),
    lambda im: im.crop((0, 0, im.width * 3 // 4, im.height * 3 // 4)),
    lambda im: im.resize((im.width // 2, im.height // 2)),
    lambda im: ImageEnhance.Brightness(im).enhance(1.4),
    lambda im: ImageEnhance.Contrast(im).enhance(0.6),
    lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
    lambda im: ImageOps.grayscale(im).convert("RGB"),
    lambda im: ImageOps.posterize(im, 3),
    lambda im: ImageOps.flip(im),
    lambda im: ImageOps.expand(im, border=12, fill=(255, 255, 255)),
    lambda im: ImageEnhance.Color(im).enhance(0.2),
    lambda im: im.resize((im.width, im.height * 2 // 3)),
    lambda im: ImageOps.autocontrast(im),
    lambda im: im.filter(ImageFilter.SHARPEN),
    lambda im: im.rotate(180),
    lambda im: ImageOps.solarize(im, 200),
]


@pytest.fixture(scope="module")
def transformed(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> Path:
    """2,000 small JPEGs named <id>.jpg: 20 transformed copies of 100 real photographs."""
    folder = tmp_path_factory.mktemp("transformed")
    qualities = [92, 75, 55]
    for p, path in enumerate(photos[:100]):
        base = _thumbnail(path, 128)
        for t, transform in enumerate(_TRANSFORMS):
            image_id = 1 + p * len(_TRANSFORMS) + t
            transform(base).save(folder / f"{image_id}.jpg", quality=qualities[image_id % 3])
    assert len(list(folder.iterdir())) == 2000
    return folder


@pytest.fixture
def bad_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Good images plus one of each kind of bad file, and the reason each bad one must get."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i + 1}.jpg").write_bytes(encode(synthetic_image(i, (120, 90))))
    good = encode(synthetic_image(99, (200, 150)))
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (400, 400, 3), dtype=np.uint8))
    bad = {
        "101.jpg": (good[: len(good) // 3], "bad image"),  # truncated
        "102.jpg": (b"this is not an image\n" * 20, "bad image"),
        "103.png": (b"", "bad image"),  # empty
        "104.png": (png_bomb(), "too large"),
        "105.png": (encode(noise, "PNG"), "too large"),  # > the 100 kB upload limit the tests set
        "106.tif": (encode(synthetic_image(5), "PDF"), "bad image"),  # a PDF named .tif
        "notes.jpg": (good, "bad file name"),
    }
    for name, (data, _) in bad.items():
        (folder / name).write_bytes(data)
    (folder / "107.jpg").symlink_to(folder / "gone.jpg")  # dangling: cannot be read
    (folder / "README.txt").write_text("not looked at: not an image suffix")
    return folder, {**{name: reason for name, (_, reason) in bad.items()}, "107.jpg": "unreadable"}


# -- the service's own store, the service's own results ------------------------------------------------


def test_import_while_the_service_runs_matches_http(tmp_path: Path, photos: list[Path]) -> None:
    """Import into the data dir of a running phash service: it serves the new ids without a restart,
    and stores and answers exactly like a service fed the same files over HTTP."""
    imported_dir, http_dir = tmp_path / "imported" / "phash", tmp_path / "http" / "phash"
    imported_dir.parent.mkdir()
    http_dir.parent.mkdir()
    fast_sync = {"AMBIENCE_PHASH_SYNC_INTERVAL_S": "0.2"}
    live = ServiceProcess(*PHASH, imported_dir, extra_env=fast_sync).start()
    reference = ServiceProcess(*PHASH, http_dir).start()
    try:
        assert httpx.get(live.url + "/stats").json()["count"] == 0
        result = run_cli(str(PHOTOS), "--jobs", "2", data_dir=imported_dir)
        assert result.returncode == 0, result.stderr
        assert re.search(rf"added\s+{len(photos)}\n", result.stderr), result.stderr
        mapping = read_mapping(imported_dir)
        assert sorted(path for _, path in mapping) == sorted(os.path.abspath(p) for p in photos)
        assert sorted(image_id for image_id, _ in mapping) == list(range(1, len(photos) + 1))

        deadline = time.monotonic() + 20
        while httpx.get(live.url + "/stats").json()["index"]["entries"] < len(photos):
            assert time.monotonic() < deadline, "the running service did not pick up the import"
            time.sleep(0.1)
        assert live.proc is not None and live.proc.poll() is None  # never restarted

        with httpx.Client(base_url=reference.url, timeout=30) as ref_client:
            upload_all(ref_client, "phash_features", [(i, Path(p)) for i, p in mapping])
            with httpx.Client(base_url=live.url, timeout=30) as live_client:
                queries = random.Random(1).sample([Path(p) for _, p in mapping], 8)
                search_pair(live_client, ref_client, "phash", queries, [i for i, _ in mapping[::13]])
    finally:
        live.stop()
        reference.stop()
    feature = PhashFeature(PhashSettings())
    imported, via_http = stored_items(imported_dir, feature), stored_items(http_dir, feature)
    assert len(imported) == len(photos)
    assert imported == via_http


def test_2000_transformed_copies_match_http(tmp_path: Path, transformed: Path) -> None:
    """Ids from file names, two worker processes: byte-identical store, identical searches."""
    imported_dir, http_dir = tmp_path / "imported" / "phash", tmp_path / "http" / "phash"
    imported_dir.parent.mkdir()
    http_dir.parent.mkdir()
    result = run_cli(
        str(transformed), "--ids-from-filenames", "--jobs", "2", "--chunk-size", "64", data_dir=imported_dir
    )
    assert result.returncode == 0, result.stderr
    assert not (imported_dir / IDS_CSV).exists()  # the file names are the ids

    files = sorted(((int(p.stem), p) for p in transformed.iterdir()), key=lambda item: item[0])
    reference = ServiceProcess(*PHASH, http_dir).start()
    served = ServiceProcess(*PHASH, imported_dir).start()
    try:
        with httpx.Client(base_url=reference.url, timeout=30) as ref_client:
            upload_all(ref_client, "phash_features", files)
            with httpx.Client(base_url=served.url, timeout=30) as imp_client:
                assert imp_client.get("/stats").json()["count"] == 2000
                rng = random.Random(2)
                queries = [p for _, p in rng.sample(files, 12)]
                search_pair(imp_client, ref_client, "phash", queries, [i for i, _ in rng.sample(files, 40)])
    finally:
        reference.stop()
        served.stop()
    feature = PhashFeature(PhashSettings())
    imported = stored_items(imported_dir, feature)
    assert sorted(imported) == list(range(1, 2001))
    assert imported == stored_items(http_dir, feature)


def test_color_import_in_process_matches_http(tmp_path: Path, photos: list[Path]) -> None:
    """The importer is generic: the color service's store and answers, one job in this process."""
    folder = tmp_path / "some"
    folder.mkdir()
    for path in photos[:30]:
        (folder / path.name).symlink_to(path)
    feature = build_feature("color", tmp_path / "imported" / "color")
    assert isinstance(feature, ColorFeature)
    report = run_import(feature, folder, start_id=500, jobs=1, progress=False)
    assert (report.added, report.already_stored, report.failures) == (30, 0, [])
    mapping = read_mapping(feature.settings.resolved_data_dir())
    assert sorted(i for i, _ in mapping) == list(range(500, 530))

    http_dir = tmp_path / "http" / "color"
    imported_app = build_color_app(ColorSettings(data_dir=feature.settings.resolved_data_dir()))
    with (
        TestClient(build_color_app(ColorSettings(data_dir=http_dir))) as ref,
        TestClient(imported_app) as imp,
    ):
        upload_all(ref, "color_features", [(i, Path(p)) for i, p in mapping])
        for image_id, path in mapping[::6]:
            data = Path(path).read_bytes()
            answers = [
                c.post(
                    "/color_get_similar_images_by_image_buffer",
                    files={"image": ("q.jpg", data)},
                    data={"k": "5"},
                ).json()
                for c in (imp, ref)
            ]
            assert answers[0] == answers[1]
            assert answers[0][0]["image_id"] == image_id
    assert stored_items(http_dir, feature) == stored_items(feature.settings.resolved_data_dir(), feature)


# -- failures -----------------------------------------------------------------------------------------


def test_bad_files_are_reported_and_skipped(tmp_path: Path, bad_folder: tuple[Path, dict[str, str]]) -> None:
    folder, expected = bad_folder
    settings = PhashSettings(data_dir=tmp_path / "phash", max_upload_bytes=100_000)
    report = run_import(PhashFeature(settings), folder, ids_from_names=True, jobs=2, progress=False)
    got = {Path(f.path).name: f.reason for f in report.failures}
    assert got == expected
    assert report.added == 6 and report.files == 6 + len(expected)

    # The CSV lists the same failures, each with a message naming the problem.
    with (tmp_path / "phash" / FAILURES_CSV).open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {Path(r["path"]).name: r["reason"] for r in rows} == expected
    details = {Path(r["path"]).name: r["detail"] for r in rows}
    assert "truncated" in details["101.jpg"] or "corrupt" in details["101.jpg"]
    assert "0 bytes" in details["103.png"]
    assert "pixels" in details["104.png"]
    assert "100000" in details["105.png"]
    assert "not <image id>" in details["notes.jpg"]
    summary = report.summary()
    assert re.search(r"failed\s+8\n", summary), summary
    assert all(name in summary for name in expected)

    stored = stored_items(tmp_path / "phash", PhashFeature(settings))
    assert sorted(stored) == [1, 2, 3, 4, 5, 6]
    assert stored[3] == PhashFeature(settings).extract((folder / "3.jpg").read_bytes())


def test_cli_exit_codes_and_rerun(
    tmp_path: Path,
    bad_folder: tuple[Path, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _ = bad_folder
    monkeypatch.setenv("AMBIENCE_PHASH_MAX_UPLOAD_BYTES", "100000")
    args = [
        "import",
        "phash",
        str(folder),
        "--ids-from-filenames",
        "--jobs",
        "1",
        "--no-progress",
        "--data-dir",
        str(tmp_path),
    ]
    assert cli_main(args) == 1  # some files failed
    assert cli_main(args) == 1  # failed files are tried again, and fail again
    err = capsys.readouterr().err
    assert "6 already stored, 7 to do" in err
    assert cli_main(["import", "phash", str(folder / "missing"), "--data-dir", str(tmp_path)]) == 3
    assert "is not a folder" in capsys.readouterr().err
    good = tmp_path / "good"
    good.mkdir()
    (good / "7.jpg").write_bytes((folder / "1.jpg").read_bytes())
    assert (
        cli_main(
            [
                "import",
                "phash",
                str(good),
                "--ids-from-filenames",
                "--no-progress",
                "--data-dir",
                str(tmp_path),
            ]
        )
        == 0
    )


def test_a_second_import_into_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    data_dir = tmp_path / "phash"
    data_dir.mkdir()
    lock = _ImportLock(data_dir)
    try:
        with pytest.raises(ImportRefused, match="another ambience import"):
            run_import(PhashFeature(PhashSettings(data_dir=data_dir)), tmp_path / "in", progress=False)
    finally:
        lock.release()


# -- resume -----------------------------------------------------------------------------------------------


def test_sigkilled_import_resumes_without_duplicates(tmp_path: Path, photos: list[Path]) -> None:
    folder = tmp_path / "library"
    folder.mkdir()
    for copy in "abc":  # three names per photo: 3 x 104 files, each its own image
        (folder / copy).mkdir()
        for path in photos:
            (folder / copy / path.name).symlink_to(path)
    total = 3 * len(photos)
    data_dir = tmp_path / "phash"
    feature = PhashFeature(PhashSettings(data_dir=data_dir))
    env = {**os.environ, "AMBIENCE_PHASH_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen(
        ambience_command("import", "phash", str(folder), "--jobs", "1", "--chunk-size", "4", "--no-progress"),
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (data_dir / "store.lmdb").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with opened_store(data_dir, feature) as store:
            while store.count() < 40:
                assert proc.poll() is None, "the import finished before it could be interrupted"
                assert time.monotonic() < deadline
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            partial = store.count()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 40 <= partial < total
    first_mapping = read_mapping(data_dir)
    assert len(first_mapping) == total  # all ids were recorded before the first write

    result = run_cli(str(folder), "--jobs", "2", "--no-progress", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert f"{partial} already stored, {total - partial} to do" in result.stderr
    assert read_mapping(data_dir) == first_mapping  # same ids, nothing appended

    stored = stored_items(data_dir, feature)
    assert sorted(stored) == sorted(i for i, _ in first_mapping) == list(range(1, total + 1))
    with opened_store(data_dir, feature) as store:
        assert store.generation == total  # every record was written exactly once
    for image_id, path in first_mapping[::25]:
        assert stored[image_id] == feature.extract(Path(path).read_bytes())


# -- ids ---------------------------------------------------------------------------------------------------


def test_sequential_ids_are_stable_and_skip_used_ones(tmp_path: Path) -> None:
    mapping = IdMapping(tmp_path / IDS_CSV)
    ids, failures = mapping.assign(["/a", "/b", "/c"], used={11, 12}, start_id=10, max_image_id=2**63)
    assert ids == [(10, "/a"), (13, "/b"), (14, "/c")] and failures == []
    # A crash while appending can leave half a row: it is ignored.
    with (tmp_path / IDS_CSV).open("a") as f:
        f.write("15,/d-cut-sho")
    again = IdMapping(tmp_path / IDS_CSV)
    ids, _ = again.assign(["/c", "/b", "/e"], used={11, 12}, start_id=None, max_image_id=2**63)
    assert ids == [(14, "/c"), (13, "/b"), (16, "/e")]
    assert IdMapping(tmp_path / IDS_CSV).by_path["/e"] == 16


def test_ids_from_filenames() -> None:
    paths = [Path(n) for n in ("/x/12.jpg", "/x/007.png", "/y/12.webp", "/x/cat.jpg", "/x/-3.jpg")]
    ids, failures = ids_from_filenames(paths, max_image_id=2**53)
    assert ids == [(12, "/x/12.jpg"), (7, "/x/007.png")]
    assert [(Path(f.path).name, f.reason) for f in failures] == [
        ("12.webp", "duplicate id"),
        ("cat.jpg", "bad file name"),
        ("-3.jpg", "bad file name"),
    ]


def test_registered_services_resolve_to_their_classes() -> None:
    assert service_classes("phash") == (PhashFeature, PhashSettings)
    assert service_classes("color") == (ColorFeature, ColorSettings)
    with pytest.raises(ImportRefused, match="unknown service"):
        service_classes("nope")


# -- the batched (model service) path ------------------------------------------------------------------


class BatchedPhash(PhashFeature):
    """phash split the way a model service splits: workers decode, this process "runs the model"."""

    batched_extract = True
    import_batch_size = 5
    batches: list[int] = []  # noqa: RUF012 - test bookkeeping

    def prepare(self, data: bytes) -> DecodedImage:
        return self.decode(data, "L", draft_size=self.settings.decode_size)

    def extract_batch(self, prepared: list[DecodedImage]) -> list[bytes]:
        self.batches.append(len(prepared))
        return [phash_variants(item.image, mirror=True).tobytes() for item in prepared]


def test_batched_extract_hook_gives_the_same_bytes(
    tmp_path: Path, bad_folder: tuple[Path, dict[str, str]]
) -> None:
    folder, expected = bad_folder
    for i in range(12):
        (folder / f"{1000 + i}.jpg").write_bytes(encode(synthetic_image(200 + i, (160, 120))))
    feature = BatchedPhash(PhashSettings(data_dir=tmp_path / "phash", max_upload_bytes=100_000))
    report = run_import(feature, folder, ids_from_names=True, jobs=2, chunk_size=3, progress=False)
    assert {Path(f.path).name: f.reason for f in report.failures} == expected
    assert report.added == 18
    assert max(BatchedPhash.batches) == 5 and sum(BatchedPhash.batches) == 18
    stored = stored_items(tmp_path / "phash", feature)
    plain = PhashFeature(feature.settings)
    for image_id in (1, 6, 1000, 1011):
        name = f"{image_id}.jpg"
        assert stored[image_id] == plain.extract((folder / name).read_bytes())


def test_scan_follows_symlinks_but_not_loops(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("a/1.jpg", "2.PNG", ".hidden/3.jpg", "notes.txt", ".4.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in scan_folder(tmp_path)] == ["2.PNG", "a/1.jpg"]


def test_model_service_import_decodes_in_workers_and_batches_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """global_features (tiny timm model, random weights): the EmbeddingFeature hooks."""
    pytest.importorskip("timm")
    from services.global_features.service import GlobalFeature
    from services.global_features.settings import GlobalFeaturesSettings

    monkeypatch.setenv("AMBIENCE_ALLOW_RANDOM_WEIGHTS", "1")
    monkeypatch.setenv("AMBIENCE_MODELS_DIR", str(tmp_path / "models"))
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(10):
        (folder / f"{i + 1}.jpg").write_bytes(encode(synthetic_image(300 + i, (200, 150))))
    (folder / "11.jpg").write_bytes(b"not an image")
    settings = GlobalFeaturesSettings(
        data_dir=tmp_path / "global_features", model="test_vit.r160_in1k", weights="random", device="cpu"
    )
    feature = service_classes("global_features")[0](settings)
    assert isinstance(feature, GlobalFeature) and feature.batched_extract
    report = run_import(feature, folder, ids_from_names=True, jobs=2, chunk_size=2, progress=False)
    assert report.added == 10
    assert [(Path(f.path).name, f.reason) for f in report.failures] == [("11.jpg", "bad image")]
    stored = stored_items(tmp_path / "global_features", feature)
    for image_id in (1, 5, 10):
        one_by_one = np.frombuffer(feature.extract((folder / f"{image_id}.jpg").read_bytes()), np.float32)
        np.testing.assert_allclose(np.frombuffer(stored[image_id], np.float32), one_by_one, atol=1e-4)
    feature.close()

"""`ambience index` (resumable, mapping kept) and `ambience search` against a real gateway over HTTP
(services and gateway in-process, ambience_support.inprocess; the CLI a real process)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ambience_support.images import encode, synthetic_image
from ambience_support.inprocess import InProcessStack, inprocess_stack
from ambience_support.pg import TestServer
from ambience_support.photos import REPO


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[InProcessStack]:
    with inprocess_stack(tmp_path_factory.mktemp("cli"), pg_server, ["phash", "color"]) as st:
        yield st


def ambience(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"AMBIENCE_DATA_DIR": str(data_dir)} if data_dir else {})}
    return subprocess.run(
        [sys.executable, "-m", "ambience", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(stat.S_IRUSR | stat.S_IXUSR)


def test_index_is_resumable_and_search_prints_a_table(stack: InProcessStack, tmp_path: Path) -> None:
    folder = tmp_path / "pictures"
    (folder / "sub").mkdir(parents=True)
    for i in range(4):
        (folder / f"p{i}.jpg").write_bytes(encode(synthetic_image(i)))
    (folder / "sub" / "p4.png").write_bytes(encode(synthetic_image(4), "PNG"))
    (folder / "notes.txt").write_text("not a picture")

    data = tmp_path / "data"
    read_only(folder)  # a read-only share: the mapping goes to the data dir, the library is untouched
    first = ambience("index", str(folder), "--gateway", stack.url, "--concurrency", "2", data_dir=data)
    assert first.returncode == 0, first.stderr
    assert "files: 5" in first.stdout and "added: 5" in first.stdout
    assert not (folder / ".ambience_ids.csv").exists()
    (mapping_file,) = (data / "index").glob("pictures-*.csv")
    mapping = mapping_file.read_text().split()
    assert len(mapping) == 6  # the folder row and five ids
    # each upload carries its path inside the folder, which the gateway records (the page and its
    # CSV show it; duplicate groups' reference folders match it)
    ids = [int(row.split(",")[0]) for row in mapping[1:]]
    info = httpx.post(stack.url + "/image_info", json={"image_ids": ids}, timeout=30).json()
    assert sorted(v["file_name"] for v in info.values()) == [
        "p0.jpg",
        "p1.jpg",
        "p2.jpg",
        "p3.jpg",
        "sub/p4.png",
    ]

    # New files later: only they are sent, earlier ids stay as they were.
    folder.chmod(0o755)
    (folder / "p5.jpg").write_bytes(encode(synthetic_image(5)))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    second = ambience("index", str(folder), "--gateway", stack.url, data_dir=data)
    assert "skipped: 5" in second.stdout and "added: 1" in second.stdout and "rejected: 1" in second.stdout
    assert mapping_file.read_text().split()[:6] == mapping
    assert "broken.jpg" in second.stderr

    query = tmp_path / "query.jpg"
    query.write_bytes(encode(synthetic_image(3), quality=40))
    found = ambience("search", str(query), "--gateway", stack.url, data_dir=data)
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0].split()[:5] == ["rank", "image_id", "score", "phash", "color"]
    assert lines[2].split()[0] == "1" and lines[2].split()[-1] == str(folder.resolve() / "p3.jpg")
    named = ambience("search", str(query), "--gateway", stack.url, "--mapping", str(mapping_file))
    assert named.stdout.splitlines()[2].split()[-1] == "p3.jpg"
    dup = ambience("search", str(folder / "p3.jpg"), "--duplicate", "--gateway", stack.url)
    assert dup.returncode == 0 and "distance" in dup.stdout
    text = ambience("search", "--text", "a dog", "--gateway", stack.url)
    assert text.returncode == 1 and "image_text" in text.stderr  # not running in this stack


def test_folders_get_their_own_mapping_and_never_share_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ambience.client import LEGACY_MAPPING_NAME, folder_mapping, largest_id_in_data_dir

    monkeypatch.setenv("AMBIENCE_DATA_DIR", str(tmp_path / "data"))
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    (second / LEGACY_MAPPING_NAME).write_text("7,old.jpg\n")  # written by an older version
    a = folder_mapping(first, None)
    a.assign(["x.jpg", "y.jpg"], 0, largest_id_in_data_dir(a.path))
    b = folder_mapping(second, None)
    assert b.ids == {"old.jpg": 7}, "ids of an older in-folder mapping are kept"
    b.assign(["old.jpg", "z.jpg"], 0, largest_id_in_data_dir(b.path))
    assert a.ids == {"x.jpg": 0, "y.jpg": 1} and b.ids == {"old.jpg": 7, "z.jpg": 8}
    a2 = folder_mapping(first, None)
    a2.assign(["w.jpg"], 0, largest_id_in_data_dir(a2.path))
    assert a2.ids["w.jpg"] == 9 and a2.path != b.path


def test_catalog_status_and_retry(stack: InProcessStack) -> None:
    status = ambience("catalog", "status", "--gateway", stack.url)
    assert status.returncode == 0, status.stderr
    assert "failed parts: none" in status.stdout and "pending parts:" in status.stdout
    retry = ambience("catalog", "retry", "--gateway", stack.url)
    assert retry.returncode == 0 and "requeued: 0" in retry.stdout


def test_index_never_lands_on_a_taken_id_and_says_why_a_file_was_not_added(
    stack: InProcessStack, tmp_path: Path
) -> None:
    import httpx

    def gateway_add(image_id: int, seed: int) -> None:
        files = {"image": ("document", encode(synthetic_image(seed)))}
        reply = httpx.post(
            stack.url + "/calculate_all_image_features", files=files, data={"image_id": str(image_id)}
        )
        assert reply.status_code == 200, reply.text

    data = tmp_path / "data"
    gateway_add(1000, 50)  # the README's curl example, outside `ambience index`
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(encode(synthetic_image(51)))
    first = ambience("index", str(folder), "--gateway", stack.url, data_dir=data)
    assert "added: 1" in first.stdout, first.stdout + first.stderr
    (mapping_file,) = (data / "index").glob("new-*.csv")
    assert int(mapping_file.read_text().split()[-1].split(",")[0]) > 1000

    # An id of the user's own mapping that holds another image: reported, not silently skipped.
    own = tmp_path / "own.csv"
    own.write_text(f"{int(mapping_file.read_text().split()[-1].split(',')[0])},b.jpg\n")
    (folder / "b.jpg").write_bytes(encode(synthetic_image(52)))
    clash = ambience("index", str(folder), "--gateway", stack.url, "--mapping", str(own), data_dir=data)
    assert "conflict: 1" in clash.stdout and "b.jpg" in clash.stderr and "another image" in clash.stderr

    # An id still being deleted from a service that is down: accepted at once (the gateway queues
    # the add behind color's delete), color's part named; complete once color is back.
    stack.services["color"].stop()
    try:
        reply = httpx.post(stack.url + "/delete_all_image_features", json={"image_id": 1000})
        assert {e["service"]: e["status"] for e in reply.json()}["color"] == "unavailable"
        own.write_text("1000,b.jpg\n")
        # --no-wait: the backlog cannot shrink while color is down (the run would wait out its minute)
        later = ambience(
            "index", str(folder), "--gateway", stack.url, "--mapping", str(own), "--no-wait", data_dir=data
        )
        assert "added, retrying some: 2" in later.stdout, later.stdout + later.stderr  # and a.jpg, new
        assert "b.jpg (id 1000): color unavailable" in later.stderr, later.stderr
    finally:
        stack.services["color"].start()
    stack.wait_complete([1000])

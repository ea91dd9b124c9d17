"""`ambience index` (resumable, mapping kept) and `ambience search` against a real gateway."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.stack import Stack, start_stack
from tests.helpers import REPO, encode, synthetic_image
from tests.pg import TestServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[Stack]:
    st = start_stack(tmp_path_factory.mktemp("cli"), pg_server, ["phash", "color"])
    yield st
    st.stop()


def ambience(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ambience", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_index_is_resumable_and_search_prints_a_table(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "pictures"
    (folder / "sub").mkdir(parents=True)
    for i in range(4):
        (folder / f"p{i}.jpg").write_bytes(encode(synthetic_image(i)))
    (folder / "sub" / "p4.png").write_bytes(encode(synthetic_image(4), "PNG"))
    (folder / "notes.txt").write_text("not a picture")

    first = ambience("index", str(folder), "--gateway", stack.url, "--concurrency", "2")
    assert first.returncode == 0, first.stderr
    assert "files: 5" in first.stdout and "added: 5" in first.stdout
    mapping = (folder / ".ambience_ids.csv").read_text().split()
    assert len(mapping) == 5

    # New files later: only they are sent, earlier ids stay as they were.
    (folder / "p5.jpg").write_bytes(encode(synthetic_image(5)))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    second = ambience("index", str(folder), "--gateway", stack.url)
    assert "skipped: 5" in second.stdout and "added: 1" in second.stdout and "rejected: 1" in second.stdout
    assert (folder / ".ambience_ids.csv").read_text().split()[:5] == mapping
    assert "broken.jpg" in second.stderr

    query = tmp_path / "query.jpg"
    query.write_bytes(encode(synthetic_image(3), quality=40))
    found = ambience(
        "search", str(query), "--gateway", stack.url, "--mapping", str(folder / ".ambience_ids.csv")
    )
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0].split()[:5] == ["rank", "image_id", "score", "phash", "color"]
    assert lines[2].split()[0] == "1" and lines[2].split()[-1] == "p3.jpg"
    dup = ambience("search", str(folder / "p3.jpg"), "--duplicate", "--gateway", stack.url)
    assert dup.returncode == 0 and "distance" in dup.stdout
    text = ambience("search", "--text", "a dog", "--gateway", stack.url)
    assert text.returncode == 1 and "image_text" in text.stderr  # not running in this stack

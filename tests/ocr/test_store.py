"""The PostgreSQL text index and its ranking, without OCR (rows of known text)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ambience_support.pg import TestServer
from services.common.postgres.database import Database
from services.ocr.recognizer import TextLine
from services.ocr.store import COMPONENT, MIGRATIONS, SEARCH_SQL, TextStore, row_values

BOX = [[0.0, 0.0], [10.0, 0.0], [10.0, 5.0], [0.0, 5.0]]
TEXTS = {
    1: ["Cafe Roma", "open daily"],
    2: ["Bakery Schmidt"],
    3: ["Kaffee und Kuchen"],
    4: ["Coffee Shop"],
    5: ["Romano Pizza"],
    6: ["Hotel Bellevue"],
}


def lines(*texts: str) -> list[TextLine]:
    return [TextLine(t, BOX, 0.9) for t in texts]


def filled(dsn: str) -> Iterator[TextStore]:
    db = Database(dsn, migrations={COMPONENT: MIGRATIONS})
    store = TextStore(db)
    for image_id, texts in TEXTS.items():
        assert store.add(image_id, lines(*texts), "test-model")
    yield store
    db.close()


@pytest.fixture(scope="module")
def ranked(pg_server: TestServer) -> Iterator[TextStore]:
    """Shared by the tests that only search."""
    yield from filled(pg_server.new_database("ocr_ranked"))


@pytest.fixture
def store(pg_dsn: str) -> Iterator[TextStore]:
    """A store of its own, for tests that change it."""
    yield from filled(pg_dsn)


def top(store: TextStore, query: str, k: int = 5) -> list[int]:
    return [hit["image_id"] for hit in store.search(query, k)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("cafe roma", 1),
        ("CAFÉ roma!", 1),  # case, accents and punctuation do not matter
        ("caffe roma", 1),  # misspelt
        ("kafe roma", 1),  # phonetic
        ("roma", 1),  # one word of two
        ("rom", 1),  # part of a word
        ("shmit", 2),
        ("bakry", 2),
        ("cofee shop", 4),
        ("pizza romana", 5),
        ("hotell belvue", 6),
    ],
)
def test_fuzzy_queries_rank_the_right_text_first(ranked: TextStore, query: str, expected: int) -> None:
    assert top(ranked, query)[0] == expected


def test_scores_are_ordered_and_explained(ranked: TextStore) -> None:
    hits = ranked.search("caffe", 10, explain=True)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert hits[0]["text"] == "Cafe Roma\nopen daily"
    best = hits[0]["parts"]
    assert best["phonetic"] == 1.0 and 0 < best["trigram"] < 1 and 0 < best["edit"] < 1
    assert ranked.search("cafe roma", 1, explain=True)[0]["score"] == 1.0
    assert len(ranked.search("caffe", 1)) == 1


def test_unrelated_query_finds_nothing(ranked: TextStore) -> None:
    assert ranked.search("xylophone quartz", 5) == []
    assert ranked.search("!!!", 5) == []


def test_image_without_text_is_stored_but_never_returned(store: TextStore) -> None:
    assert store.add(100, [], "test-model")
    assert not store.add(100, [], "test-model")  # stored: not processed again
    stored = store.get(100)
    assert stored is not None and stored.has_text is False and stored.text == ""
    assert store.counts() == {"count": len(TEXTS) + 1, "with_text": len(TEXTS)}
    for query in ("a", "cafe", "e", "0"):
        assert 100 not in top(store, query, k=100)


def test_the_sha256_of_the_uploaded_file_is_kept_per_image(store: TextStore) -> None:
    assert store.add(101, lines("Tram Stop"), "test-model", "ab" * 32)
    assert not store.add(101, lines("Tram Stop"), "test-model", "cd" * 32)  # the first one stays
    assert store.digest(101) == "ab" * 32
    assert store.digest(1) is None  # added without one
    assert store.delete(101) and store.digest(101) is None


def test_existing_id_is_not_overwritten_and_delete_removes(store: TextStore) -> None:
    assert not store.add(1, lines("Something Else"), "other-model")
    assert top(store, "cafe roma")[0] == 1
    assert store.delete(1) is True
    assert store.delete(1) is False
    assert 1 not in top(store, "cafe roma")
    assert store.get(1) is None


def test_lines_boxes_and_confidences_are_kept(ranked: TextStore) -> None:
    stored = ranked.get(1)
    assert stored is not None
    assert stored.lines == [
        {"text": "Cafe Roma", "box": BOX, "confidence": 0.9},
        {"text": "open daily", "box": BOX, "confidence": 0.9},
    ]


def test_search_uses_the_trigram_and_phonetic_indexes(store: TextStore) -> None:
    store.add_many([row_values(1000 + i, lines(f"filler text number {i}"), "m") for i in range(300)])

    params = store.query_params("roma", 5)

    def plan(cur: Any) -> str:
        # A tiny table: rule out the scans that only win at this size, to see the index paths.
        cur.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off")
        cur.execute("EXPLAIN " + SEARCH_SQL, params)
        return "\n".join(row[0] for row in cur.fetchall())

    text = store.db.run(plan)
    assert "Bitmap Index Scan on ocr_images_trgm" in text, text
    assert "Bitmap Index Scan on ocr_images_phonetic" in text, text


def test_stop_words_and_short_words_produce_no_candidates_on_their_own(store: TextStore) -> None:
    assert store.add(7, lines("A"), "test-model")
    assert store.add(8, lines("at the station"), "test-model")
    assert store.add(9, lines("Lake Geneva"), "test-model")
    assert store.add(10, lines("Platform 5"), "test-model")
    assert top(store, "a lake", 10) == [9]
    assert top(store, "the lake", 10) == [9]
    assert store.search("a", 5) == [] and store.search("of the", 5) == []
    assert top(store, "5", 10) == [10], "a number is short but carries meaning"

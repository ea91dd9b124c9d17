"""The OCR text index in PostgreSQL: one row per image, fuzzy search in SQL (no HTTP here).

Ranking (all three parts in [0, 1], combined with weights from settings, default 0.5/0.25/0.25):

- trigram: ``word_similarity(query, text)`` of pg_trgm, the best match of the query's trigrams
  against any stretch of the image's text, so a query may be part of a longer text and may be
  misspelt ("caffe" for "cafe");
- phonetic: the share of query words whose Double Metaphone key (primary or alternate, from
  fuzzystrmatch) is among the keys of the image's words ("kafe" and "cafe" are both KF);
- edit: per query word, 1 - Levenshtein distance / longer length against the closest word of the
  image, averaged over the query words.

Candidates come from the two GIN indexes: the trigram index (``text %> query``, the
word-similarity threshold in settings) and the phonetic-key index (``keys && query keys``); only
candidates are scored. Images without text are stored (so they are not processed again) with
``has_text = false`` and are outside both partial indexes, so no search returns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import Json, execute_values

from services.common.postgres.database import Database, Migration
from services.ocr.recognizer import TextLine
from services.ocr.text import normalise, query_words, words

COMPONENT = "ocr"

#: The two partial GIN indexes search depends on (the benchmark drops and recreates them).
INDEX_DDL = {
    "ocr_images_trgm": "CREATE INDEX ocr_images_trgm ON ocr_images"
    " USING gin (norm_text gin_trgm_ops) WHERE has_text",
    "ocr_images_phonetic": "CREATE INDEX ocr_images_phonetic ON ocr_images"
    " USING gin (phonetic) WHERE has_text",
}

SCHEMA_V1 = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;
-- Double Metaphone keys (primary and alternate) of a list of words, sorted and distinct.
CREATE FUNCTION ocr_phonetic_keys(words text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT k ORDER BY k), '{}')
    FROM unnest(words) AS w, LATERAL (VALUES (dmetaphone(w)), (dmetaphone_alt(w))) AS v(k)
    WHERE k <> ''
$$;
CREATE TABLE ocr_images (
    image_id bigint PRIMARY KEY CHECK (image_id >= 0),
    has_text boolean NOT NULL,
    text text NOT NULL,             -- recognised lines joined with newlines
    norm_text text NOT NULL,        -- services.ocr.text.normalise(text)
    words text[] NOT NULL,          -- distinct words of norm_text
    phonetic text[] NOT NULL,       -- ocr_phonetic_keys(words)
    lines jsonb NOT NULL,           -- [{"text", "box", "confidence"}]
    model text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now()
);
"""

MIGRATIONS: Sequence[Migration] = (
    Migration(
        1,
        "ocr_images with trigram and phonetic indexes",
        SCHEMA_V1 + ";\n".join(INDEX_DDL.values()),
    ),
    Migration(
        2,
        "SHA-256 of the uploaded file per image",
        "ALTER TABLE ocr_images ADD COLUMN digest text;",
    ),
)

SEARCH_SQL = """
WITH query_words AS MATERIALIZED (  -- each query word's phonetic keys, computed once
    SELECT w, ocr_phonetic_keys(ARRAY[w]) AS keys FROM unnest(%(words)s::text[]) AS w
),
candidates AS (
    (SELECT image_id FROM ocr_images
     WHERE has_text AND norm_text %%> %(norm)s  -- the GIN index serves this side only
     ORDER BY word_similarity(%(norm)s, norm_text) DESC LIMIT %(limit)s)
    UNION
    (SELECT image_id FROM ocr_images
     WHERE has_text AND phonetic && ocr_phonetic_keys(%(words)s::text[])
     ORDER BY word_similarity(%(norm)s, norm_text) DESC LIMIT %(limit)s)
),
scored AS (
    SELECT o.image_id, o.text,
        word_similarity(%(norm)s, o.norm_text) AS trigram,
        (SELECT coalesce(avg((q.keys && o.phonetic)::int), 0)
         FROM query_words AS q WHERE q.keys <> '{}') AS phonetic,
        (SELECT coalesce(avg(best), 0) FROM (
            SELECT max(1 - levenshtein(q.w, iw)::float8 / greatest(length(q.w), length(iw), 1)) AS best
            FROM query_words AS q CROSS JOIN unnest(o.words) AS iw
            GROUP BY q.w) AS per_word) AS edit
    FROM ocr_images AS o JOIN candidates USING (image_id)
)
SELECT image_id, text, trigram, phonetic, edit,
       %(w_trigram)s * trigram + %(w_phonetic)s * phonetic + %(w_edit)s * edit AS score
FROM scored
WHERE %(w_trigram)s * trigram + %(w_phonetic)s * phonetic + %(w_edit)s * edit >= %(min_score)s
ORDER BY score DESC, image_id
LIMIT %(k)s
"""


@dataclass(frozen=True)
class Ranking:
    """How search results are found and ordered (see the module docstring)."""

    weight_trigram: float = 0.5
    weight_phonetic: float = 0.25
    weight_edit: float = 0.25
    #: pg_trgm.word_similarity_threshold for trigram candidates.
    trigram_threshold: float = 0.3
    #: Most candidates taken from each index before scoring.
    candidates: int = 200
    #: Results scoring below this are left out.
    min_score: float = 0.25


@dataclass(frozen=True)
class StoredText:
    image_id: int
    has_text: bool
    text: str
    lines: list[dict[str, Any]]
    model: str


def row_values(image_id: int, lines: Sequence[TextLine], model: str, digest: str = "") -> tuple[Any, ...]:
    """A row for :meth:`TextStore.add_many`; ``digest``: the SHA-256 (hex) of the uploaded file,
    when known."""
    text = "\n".join(line.text for line in lines)
    norm = normalise(text)
    lines_json = Json([ln.as_dict() for ln in lines])
    return (image_id, bool(norm), text, norm, words(norm), lines_json, model, digest or None)


class TextStore:
    """ocr_images: add / delete / get / search. Every call may raise DatabaseUnavailable."""

    def __init__(self, db: Database, ranking: Ranking | None = None) -> None:
        self.db = db
        self.ranking = ranking or Ranking()

    def add(self, image_id: int, lines: Sequence[TextLine], model: str, digest: str = "") -> bool:
        """Store an image's lines (of a file with SHA-256 ``digest``, when known); False (nothing
        changed) when the id is already stored."""
        return self.add_many([row_values(image_id, lines, model, digest)]) == 1

    def add_many(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert rows made by :func:`row_values`; existing ids are left alone. Returns rows added."""

        def insert(cur: Cursor) -> int:
            added = execute_values(
                cur,
                "INSERT INTO ocr_images"
                " (image_id, has_text, text, norm_text, words, lines, model, digest, phonetic)"
                " SELECT v.image_id, v.has_text, v.text, v.norm_text, v.words, v.lines, v.model, v.digest,"
                " ocr_phonetic_keys(v.words)"
                " FROM (VALUES %s) AS v(image_id, has_text, text, norm_text, words, lines, model, digest)"
                " ON CONFLICT (image_id) DO NOTHING RETURNING image_id",
                rows,
                template="(%s::bigint, %s::boolean, %s::text, %s::text, %s::text[], %s::jsonb, %s::text,"
                " %s::text)",
                page_size=1000,
                fetch=True,
            )
            return len(added)

        return self.db.run(insert)

    def contains(self, image_id: int) -> bool:
        def query(cur: Cursor) -> bool:
            cur.execute("SELECT 1 FROM ocr_images WHERE image_id = %s", (image_id,))
            return cur.fetchone() is not None

        return self.db.run(query)

    def digest(self, image_id: int) -> str | None:
        """The SHA-256 of the file stored under the id; None when not stored or not recorded."""

        def query(cur: Cursor) -> str | None:
            cur.execute("SELECT digest FROM ocr_images WHERE image_id = %s", (image_id,))
            row = cur.fetchone()
            return row[0] if row else None

        return self.db.run(query)

    def delete(self, image_id: int) -> bool:
        def delete(cur: Cursor) -> bool:
            cur.execute("DELETE FROM ocr_images WHERE image_id = %s", (image_id,))
            return cur.rowcount > 0

        return self.db.run(delete)

    def get(self, image_id: int) -> StoredText | None:
        def query(cur: Cursor) -> StoredText | None:
            cur.execute(
                "SELECT image_id, has_text, text, lines, model FROM ocr_images WHERE image_id = %s",
                (image_id,),
            )
            row = cur.fetchone()
            return StoredText(*row) if row else None

        return self.db.run(query)

    def counts(self) -> dict[str, int]:
        def query(cur: Cursor) -> dict[str, int]:
            cur.execute("SELECT count(*), count(*) FILTER (WHERE has_text) FROM ocr_images")
            total, with_text = cur.fetchone()
            return {"count": int(total), "with_text": int(with_text)}

        return self.db.run(query)

    def search(self, query: str, k: int, *, explain: bool = False) -> list[dict[str, Any]]:
        """Best ``k`` images for ``query``: ``[{"image_id", "score", "text"}]``, best first.
        ``explain`` adds the three part scores to each hit."""
        params = self.query_params(query, k)
        if params is None:
            return []
        threshold = str(self.ranking.trigram_threshold)

        def run(cur: Cursor) -> list[tuple[Any, ...]]:
            cur.execute(
                "SELECT set_config('pg_trgm.word_similarity_threshold', %s, true)",
                (threshold,),
            )
            cur.execute(SEARCH_SQL, params)
            return cur.fetchall()

        hits = []
        for image_id, text, trigram, phonetic, edit, score in self.db.run(run):
            hit: dict[str, Any] = {"image_id": int(image_id), "score": round(float(score), 4), "text": text}
            if explain:
                hit["parts"] = {
                    "trigram": round(float(trigram), 4),
                    "phonetic": round(float(phonetic), 4),
                    "edit": round(float(edit), 4),
                }
            hits.append(hit)
        return hits

    def query_params(self, query: str, k: int) -> dict[str, Any] | None:
        """SEARCH_SQL's parameters; None when no query word carries meaning (only stop-words,
        one- or two-letter words, or no letters or digits at all)."""
        meaningful = query_words(normalise(query))
        if not meaningful:
            return None
        r = self.ranking
        return {
            # Stop-words are left out of the trigram side too: their trigrams match anything.
            "norm": " ".join(meaningful),
            "words": meaningful,
            "limit": r.candidates,
            "k": k,
            "w_trigram": r.weight_trigram,
            "w_phonetic": r.weight_phonetic,
            "w_edit": r.weight_edit,
            "min_score": r.min_score,
        }

    # -- benchmark support --------------------------------------------------------------------

    def drop_indexes(self) -> None:
        self.db.run(lambda cur: cur.execute("DROP INDEX IF EXISTS ocr_images_trgm, ocr_images_phonetic"))

    def create_indexes(self) -> None:
        def create(cur: Cursor) -> None:
            for name, ddl in INDEX_DDL.items():
                cur.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(ddl)
            cur.execute("ANALYZE ocr_images")

        self.db.run(create)

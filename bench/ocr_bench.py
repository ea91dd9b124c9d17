"""OCR benchmark: seconds of OCR per image, and text-search latency at 100k stored images with and
without the GIN indexes (the exhaustive scan is the reference, measured in the same run).

    python -m bench.ocr_bench [--rows 100000] [--images 8] [--repeats 20] [--small]

Prints markdown tables (``--small``: 2,000 rows, 1 image, 3 repeats, for the smoke test).

Uses the embedded PostgreSQL server in a temporary folder unless AMBIENCE_PG_DSN is set (then a
database named ambience_ocr_bench is created there). Synthetic rows are inserted directly (no OCR).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ambience_support.images import encode
from ambience_support.photos import PHOTOS, photo_paths
from ambience_support.signs import FONT_NAMES, Sign, render
from services.common.postgres.database import (
    Database,
    EmbeddedPostgres,
    PostgresSettings,
    ensure_database,
    with_database,
)
from services.ocr.recognizer import TextLine
from services.ocr.store import COMPONENT, MIGRATIONS, TextStore, row_values

# Pseudo-words from consonant-vowel(-consonant) syllables: a large, word-like vocabulary.
SYLLABLES = [c + v + e for c in "bdfghklmnprstvz" for v in "aeiou" for e in ("", "", "n", "r", "s")]
TARGETS = {
    1: "CAFE ROMA\nopen daily",
    2: "Bakery Schmidt",
    3: "PHARMACY\nopen 24 hours",
    4: "Hotel Bellevue",
}
QUERIES = [
    ("exact", "cafe roma", 1),
    ("misspelt", "caffe roma", 1),
    ("phonetic", "kafe roma", 1),
    ("partial", "bellev", 4),
    ("misspelt", "bakrey shmidt", 2),
    ("partial", "pharmac", 3),
]


def pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))


def synthetic_rows(n: int, seed: int = 0) -> list[tuple[object, ...]]:
    rng = random.Random(seed)
    box = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    rows = []
    for i in range(n):
        image_id = 1000 + i
        if rng.random() < 0.3:  # most photos say nothing
            rows.append(row_values(image_id, [], "synthetic"))
            continue
        lines = [
            TextLine(" ".join(pseudo_word(rng) for _ in range(rng.randint(1, 5))), box, 0.9)
            for _ in range(rng.randint(1, 4))
        ]
        rows.append(row_values(image_id, lines, "synthetic"))
    for image_id, text in TARGETS.items():
        rows.append(row_values(image_id, [TextLine(t, box, 0.9) for t in text.split("\n")], "synthetic"))
    return rows


#: Sign texts for the recall part: shop fronts, street signs, labels.
SIGN_TEXTS = (
    ("CAFE ROMA",),
    ("Bakery Schmidt",),
    ("PHARMACY", "open 24 hours"),
    ("Hotel Bellevue",),
    ("Coffee Shop",),
    ("Pizzeria Napoli",),
    ("Fresh Fish Market",),
    ("Museum of Modern Art",),
    ("PARKING", "max 2 hours"),
    ("Central Station",),
    ("Bookshop Lindgren",),
    ("Tram 12 Harbour",),
)
SIGN_SIZES = (16, 22, 30, 40)


def sign_set(n: int) -> list[tuple[Sign, tuple[str, ...]]]:
    """``n`` signs: every text at every size in turn, fonts, angles and backgrounds varying."""
    out = []
    for i in range(n):
        text = SIGN_TEXTS[i % len(SIGN_TEXTS)]
        size = SIGN_SIZES[(i // len(SIGN_TEXTS)) % len(SIGN_SIZES)]
        angle = ((i * 7) % 11 - 5) * 1.2
        out.append((Sign(text, FONT_NAMES[i % len(FONT_NAMES)], size, angle, i), text))
    return out


def in_photo(sign_image: Any, index: int) -> Any:
    """The 560x400 sign picture pasted into a 1600x1067 photograph (the sign a small part of it)."""
    from PIL import Image

    paths = photo_paths(PHOTOS)
    canvas = (
        Image.open(paths[(index * 5 + 3) % len(paths)]).convert("RGB").resize((1600, 1067))
        if paths
        else Image.new("RGB", (1600, 1067), (120, 130, 140))
    )
    canvas.paste(sign_image, (100 + (index * 137) % 900, 80 + (index * 89) % 560))
    return canvas


def word_recall(found: str, expected: tuple[str, ...]) -> tuple[int, int]:
    """Expected words (normalised) that are among the words read, and how many were expected."""
    from services.ocr.text import normalise

    read = set(normalise(found).split())
    words = normalise(" ".join(expected)).split()
    return sum(w in read for w in words), len(words)


def caltech_files(n: int) -> list[Path]:
    """``n`` caltech101-dev objects, one class after the other (pictures that mostly hold no text)."""
    root = Path(os.environ.get("AMBIENCE_TEST_CALTECH", str(PHOTOS.parent / "caltech101-dev")))
    if not root.is_dir():
        return []
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    return [sorted(c.glob("*.jpg"))[0] for c in classes][:n]


def bench_ocr(n_images: int, n_signs: int) -> dict[str, object]:
    """Seconds per image through the service's read path (decode included) and word recall on
    rendered signs, with the service's settings from the environment."""
    from services.ocr.service import OcrService, OcrSettings

    service = OcrService(OcrSettings())
    service.load_recognizer()
    assert service.recognizer is not None
    signs = sign_set(n_signs)
    rendered = [render(sign)[0] for sign, _ in signs]
    sets: list[tuple[str, list[bytes], list[tuple[str, ...]] | None]] = [
        ("signs 560x400", [encode(img) for img in rendered], [t for _, t in signs]),
        (
            "signs in 1600 px photos",
            [encode(in_photo(img, i)) for i, img in enumerate(rendered)],
            [t for _, t in signs],
        ),
        ("caltech101 objects", [p.read_bytes() for p in caltech_files(n_images)], None),
        ("photos <=1600px", [p.read_bytes() for p in photo_paths(PHOTOS)[:n_images]], None),
    ]
    out: dict[str, object] = {
        "model": service.recognizer.model_id,
        "settings": service.settings.ocr_summary(),
    }
    service.read(sets[0][1][0])  # warm-up
    for label, batch, expected in sets:
        if not batch:
            continue
        ocr_s, found, total, with_text = [], 0, 0, 0
        for i, data in enumerate(batch):
            t0 = time.perf_counter()
            lines = service.read(data)
            ocr_s.append(time.perf_counter() - t0)
            with_text += bool(lines)
            if expected is not None:
                hit, n = word_recall(" ".join(line.text for line in lines), expected[i])
                found, total = found + hit, total + n
        row: dict[str, object] = {
            "images": len(batch),
            "ocr_s_median": round(statistics.median(ocr_s), 3),
            "ocr_s_mean": round(statistics.mean(ocr_s), 3),
            "with_text": with_text,
        }
        if total:
            row["word_recall"] = round(found / total, 3)
            row["words"] = total
        out[label] = row
        print(f"[ocr] {label}: {row}", file=sys.stderr, flush=True)
    return out


def time_queries(store: TextStore, repeats: int) -> dict[str, dict[str, object]]:
    out = {}
    for kind, query, expected in QUERIES:
        store.search(query, 10)  # warm the cache
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            hits = store.search(query, 10)
            times.append(time.perf_counter() - t0)
        out[query] = {
            "kind": kind,
            "median_ms": round(1000 * statistics.median(times), 2),
            "rank1_ok": bool(hits) and hits[0]["image_id"] == expected,
        }
    return out


def bench_search(dsn: str, rows: int, repeats: int) -> dict[str, object]:
    db = Database(dsn, migrations={COMPONENT: MIGRATIONS}, statement_timeout_s=600)
    db.run(
        lambda cur: (
            cur.execute("DROP TABLE IF EXISTS ocr_images CASCADE; DELETE FROM ambience_migrations")
            if _has_migrations(db)
            else None
        ),
        schema=False,
    )
    db.ensure_schema()
    store = TextStore(db)
    data = synthetic_rows(rows)
    t0 = time.perf_counter()
    for start in range(0, len(data), 5000):
        store.add_many(data[start : start + 5000])
        print(f"[search] inserted {min(start + 5000, len(data))}/{len(data)}", file=sys.stderr, flush=True)
    insert_s = time.perf_counter() - t0
    db.run(lambda cur: cur.execute("ANALYZE ocr_images"))
    counts = store.counts()
    indexed = time_queries(store, repeats)
    store.drop_indexes()
    db.run(lambda cur: cur.execute("ANALYZE ocr_images"))
    scan = time_queries(store, max(3, repeats // 4))
    store.create_indexes()
    db.close()
    table = {
        q: {
            "kind": indexed[q]["kind"],
            "indexed_ms": indexed[q]["median_ms"],
            "no_index_ms": scan[q]["median_ms"],
            "speedup": round(float(scan[q]["median_ms"]) / float(indexed[q]["median_ms"]), 1),  # type: ignore[arg-type]
            "rank1_ok": indexed[q]["rank1_ok"] and scan[q]["rank1_ok"],
        }
        for q in indexed
    }
    for q, row in table.items():
        print(f"[search] {q!r}: {row}", file=sys.stderr, flush=True)
    return {"rows": counts, "insert_rows_per_s": round(len(data) / insert_s), "queries": table}


def _has_migrations(db: Database) -> bool:
    def q(cur: object) -> bool:
        cur.execute("SELECT to_regclass('ambience_migrations') IS NOT NULL")  # type: ignore[attr-defined]
        return bool(cur.fetchone()[0])  # type: ignore[attr-defined]

    return db.run(q, schema=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--signs", type=int, default=48, help="rendered signs for the recall part")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/out/ocr_bench.json"))
    parser.add_argument("--small", action="store_true", help="2,000 rows, 1 image, 3 repeats")
    args = parser.parse_args()
    if args.small:
        args.rows, args.images, args.repeats, args.signs = 2000, 1, 3, 2

    result: dict[str, object] = {"ocr": bench_ocr(args.images, args.signs)}
    settings = PostgresSettings()
    folder = None
    embedded = None
    if settings.dsn:
        dsn = ensure_database(settings.dsn, "ambience_ocr_bench")
    else:
        folder = Path(tempfile.mkdtemp(prefix="ambience-bench-pg-"))
        embedded = EmbeddedPostgres(folder / "pgdata")
        dsn = with_database(embedded.start(), "postgres")
        dsn = ensure_database(dsn, "ambience_ocr_bench")
    try:
        result["search"] = bench_search(dsn, args.rows, args.repeats)
    finally:
        if embedded is not None:
            embedded.release()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    ocr = result["ocr"]
    lines = [
        f"OCR seconds per image through the service's read path, decode included ({ocr['model']}; "
        f"{ocr['settings']}); word recall: the sign's words (normalised) among the words read:",
        "",
    ]
    lines += ["| images | n | median s | mean s | with text | word recall |", "|---|---|---|---|---|---|"]
    for label, row in ocr.items():
        if isinstance(row, dict):
            recall = f"{row['word_recall']:.3f} of {row['words']}" if "word_recall" in row else "-"
            lines.append(
                f"| {label} | {row['images']} | {row['ocr_s_median']} | {row['ocr_s_mean']} "
                f"| {row['with_text']} | {recall} |"
            )
    search = result["search"]
    lines += [
        "",
        f"Search latency over {search['rows']['count']:,} stored images ({search['rows']['with_text']:,} "
        f"with text; inserted at {search['insert_rows_per_s']} rows/s); median ms with "
        "the GIN indexes (trigram + phonetic) vs the same SQL with both dropped (sequential scan, the "
        "exhaustive reference), k = 10:",
        "",
        "| query kind | query | indexed ms | no index ms | speed-up | right image at rank 1 (both) |",
        "|---|---|---|---|---|---|",
    ]
    for q, row in search["queries"].items():
        lines.append(
            f"| {row['kind']} | `{q}` | {row['indexed_ms']} | {row['no_index_ms']} | {row['speedup']}x "
            f"| {'yes' if row['rank1_ok'] else 'no'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Faces and people: detection, descriptors and the people grouping on faces-dev, and what they cost.

1. Every photo of ../shared/faces-dev (``AMBIENCE_TEST_FACES``; 61 labelled portraits of 13 people
   and 3 group photos) through the faces service's own detection and descriptors in-process, with
   its default settings and the real dlib weights from face_recognition_models.
2. The people grouping (gateway/people/clustering.py) over those faces, added one at a time in
   file order and in shuffled orders, then after the retry pass and a full regrouping, for a sweep
   of ``max_distance`` and ``min_faces``: pairwise precision and recall over the labelled photos,
   person01 found in the two group photos that hold them, and group faces put in a person they
   cannot be (ambience_support/faces_dev.py). The bar: precision >= 0.98, recall >= 0.90.
3. Cost per 1600-px photo on one core: decoding, detection (HOG at the size that finds the minimum
   face), landmarks + descriptors, on the faces-dev photos with a 1600-px long side and on faceless
   shared photos (../shared/photos), where the slower fallback pass runs; the two fallbacks
   (HOG upsampled, the CNN at a reduced size) measured as if the first pass had found nothing.
   And a crowd of 300 faces: what the cap, the batches and the time budget keep, in how long.
4. The grouping's cost at 100,000 faces: synthetic descriptors with the real ones' statistics
   (person means drawn around the real per-person means' spread, faces around them with the real
   within-person spread; 30% strangers), the faces grouped by their synthetic person; then the time
   per face added, the pass over the unassigned faces, and a full regrouping.
5. The same faces through the gateway's persistence (gateway/people/memory.py over an embedded
   PostgreSQL): a process loading them, one face added and written as the ``people`` step does, a
   second process following, a delete; against the in-memory add of the same run.

    python -m bench.faces_bench [--small] [--people-only]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

from ambience_support.face_photos import crowd
from ambience_support.faces_dev import FACES_DEV, DevPhoto, Verdict, dev_photos, judge
from ambience_support.images import encode
from ambience_support.photos import PHOTOS, photo_paths
from gateway.people.clustering import PeopleGrouping
from gateway.people.faces import Face, GroupingSettings, Person
from services.faces.extraction import CAPPED, OUT_OF_TIME, ImageFaces
from services.faces.service import FacesFeature
from services.faces.settings import FacesSettings


def progress(message: str) -> None:
    print(f"[faces_bench] {message}", file=sys.stderr, flush=True)


def ms(seconds: list[float]) -> str:
    """Median / p90 in milliseconds (a decimal below 10 ms)."""
    if not seconds:
        return "-"
    values = np.asarray(seconds) * 1000
    median, p90 = float(np.median(values)), float(np.percentile(values, 90))
    digits = 1 if p90 < 10 else 0
    return f"{median:.{digits}f} / {p90:.{digits}f}"


def load_feature(**settings: object) -> FacesFeature:
    feature = FacesFeature(FacesSettings(data_dir=Path(tempfile.mkdtemp()), **settings))  # type: ignore[arg-type]
    feature.load()
    return feature


# -- 1. the faces of faces-dev --------------------------------------------------------------------------


def extract(feature: FacesFeature, photos: list[DevPhoto]) -> list[ImageFaces]:
    out = []
    for i, photo in enumerate(photos):
        out.append(feature.faces_of(photo.path.read_bytes()))
        if i % 16 == 15:
            progress(f"faces-dev: {i + 1}/{len(photos)} photos")
    return out


# -- 2. grouping quality ----------------------------------------------------------------------------------


def group(
    photos: list[DevPhoto], faces: list[ImageFaces], settings: GroupingSettings, order: list[int]
) -> dict[str, Verdict]:
    grouping = PeopleGrouping(settings)
    for i in order:
        keys = [(i, face) for face in range(len(faces[i]))]
        if keys:
            grouping.add(keys, faces[i].descriptors)
    counts = [len(f) for f in faces]

    def verdict() -> Verdict:
        return judge(photos, counts, lambda i, face: grouping.person_of((i, face)))

    out = {"incremental": verdict()}
    grouping.retry_unassigned()
    out["retried"] = verdict()
    grouping.regroup()
    out["regrouped"] = verdict()
    return out


def quality_table(photos: list[DevPhoto], faces: list[ImageFaces], shuffles: int) -> tuple[str, Verdict]:
    default = GroupingSettings()
    rows = [
        "| max_distance | min_faces | order | added one by one | after the retry pass | after regrouping |",
        "|---|---|---|---|---|---|",
    ]
    chosen: Verdict | None = None
    in_file_order = list(range(len(photos)))
    for distance in (0.40, 0.45, 0.48, 0.49, 0.50, 0.52, 0.55):
        for min_faces in (2, 3):
            settings = GroupingSettings(max_distance=distance, min_faces=min_faces)
            orders = [("file", in_file_order)]
            for seed in range(shuffles):
                shuffled = in_file_order[:]
                random.Random(seed).shuffle(shuffled)
                orders.append((f"shuffle {seed}", shuffled))
            results = [(name, group(photos, faces, settings, order)) for name, order in orders]
            is_default = settings == default
            if is_default:
                chosen = results[0][1]["regrouped"]
            worst = {
                stage: min((r[stage] for _, r in results), key=lambda v: (v.passes, v.recall, v.precision))
                for stage in ("incremental", "retried", "regrouped")
            }
            mark = "**" if is_default else ""
            label = f"file + {shuffles} shuffles (worst)" if shuffles else "file"
            cells = " | ".join(cell(worst[stage]) for stage in ("incremental", "retried", "regrouped"))
            rows.append(f"| {mark}{distance:.2f}{mark} | {mark}{min_faces}{mark} | {label} | {cells} |")
    assert chosen is not None
    return "\n".join(rows), chosen


def cell(v: Verdict) -> str:
    flag = "" if v.passes else " ✗"
    return (
        f"P {v.precision:.3f} R {v.recall:.3f}, p01 {len(v.person01_found)}/2, "
        f"{len(v.wrong_group_faces)} wrong{flag}"
    )


# -- 3. cost per photo -------------------------------------------------------------------------------------


def stage_times(feature: FacesFeature, data: bytes) -> tuple[float, float, float, int]:
    """(decode, detection, landmarks + descriptors) seconds and faces of one photo."""
    assert feature.detector is not None and feature.describer is not None
    params = feature.params
    started = time.perf_counter()
    rgb, _ = feature.photo(data)
    decoded = time.perf_counter()
    detections = feature.detector.detect(rgb, params.detection)[: params.max_faces]
    detected = time.perf_counter()
    if detections:
        shapes = feature.describer.landmarks(rgb, detections)
        feature.describer.describe(rgb, shapes, params.batch)
    described = time.perf_counter()
    return decoded - started, detected - decoded, described - detected, len(detections)


def cost_section(
    feature: FacesFeature, photos: list[DevPhoto], faceless: list[Path], limit: int | None = None
) -> str:
    full_size = [p for p in photos if max(Image.open(p.path).size) == 1600][:limit]
    fallback = feature.settings.fallback
    first = "first pass" + (f" + the `{fallback}` fallback" if fallback != "none" else "")
    rows = [
        "| photos | n | decode | detection | landmarks + descriptors | faces per photo |",
        "|---|---|---|---|---|---|",
    ]
    for label, paths in (
        ("faces-dev, 1600-px long side (faces found by the first pass)", [p.path for p in full_size]),
        (f"shared photos, 1600 px, no face ({first})", faceless[:limit]),
    ):
        times = [stage_times(feature, path.read_bytes()) for path in paths]
        if not times:
            continue
        decode, detect, describe, found = (list(column) for column in zip(*times, strict=True))
        per_face = [t / n for t, n in zip(describe, found, strict=True) if n]
        faces_cell = f"{statistics.mean(found):.2f}" + (f" ({ms(per_face)} ms a face)" if per_face else "")
        rows.append(
            f"| {label} | {len(paths)} | {ms(decode)} | {ms(detect)} | {ms(describe)} | {faces_cell} |"
        )
    return "\n".join(rows)


def fallback_section(
    feature: FacesFeature, photos: list[DevPhoto], faceless: list[Path], limit: int, cnn_limit: int
) -> str:
    """Each pass alone, as if the first had found nothing."""
    assert feature.detector is not None
    detector = feature.detector
    cnn = load_feature(fallback="cnn").detector
    assert cnn is not None
    params = feature.params.detection
    rows = [
        "| pass | faces-dev photos with a face found | ms per faces-dev photo (median / p90) | "
        "ms per faceless photo (median / p90) |",
        "|---|---|---|---|",
    ]

    def hog(rgb: np.ndarray) -> int:
        return len(detector.hog_pass(rgb, params))

    def upsampled(rgb: np.ndarray) -> int:
        return len(detector.hog_pass(rgb, params, upsample=1))

    def cnn_pass(rgb: np.ndarray) -> int:
        return len(cnn.cnn_pass(rgb, params))

    passes = (
        ("HOG (the first pass)", hog, limit),
        ("HOG upsampled once (fallback `upsample`)", upsampled, limit),
        ("CNN, faces >= 2x the minimum (fallback `cnn`)", cnn_pass, cnn_limit),
    )
    for label, run, limit in passes:
        found, dev_times, none_times = 0, [], []
        for photo in photos[:limit]:
            rgb, _ = feature.photo(photo.path.read_bytes())
            started = time.perf_counter()
            found += run(rgb) > 0
            dev_times.append(time.perf_counter() - started)
        for path in faceless[: min(limit, len(faceless))]:
            rgb, _ = feature.photo(path.read_bytes())
            started = time.perf_counter()
            run(rgb)
            none_times.append(time.perf_counter() - started)
        n = min(limit, len(photos))
        rows.append(f"| {label} | {found}/{n} | {ms(dev_times)} | {ms(none_times)} |")
        progress(f"fallback pass measured: {label}")
    return "\n".join(rows)


def crowd_section(rows: int, columns: int) -> str:
    """A crowd of identical faces 100 px wide in a photo analysed at full size: what the cap, the
    batches and the time budget keep of it, in how long, with how much memory."""
    picture = crowd(rows, columns, 100, growth=0)
    data = encode(picture, quality=90)
    settings = {"max_side": max(picture.size), "min_face_fraction": 0.02}
    feature = load_feature(**settings)
    before = rss_mib()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    faces = feature.faces_of(data)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    s = feature.settings
    return (
        f"A {picture.width}x{picture.height} photo of {rows * columns} faces 100 px wide (settings "
        f"`MAX_SIDE={s.max_side}`, `MIN_FACE_FRACTION={s.min_face_fraction}`, defaults otherwise: "
        f"`MAX_FACES={s.max_faces}`, `DESCRIPTOR_BATCH={s.descriptor_batch}`, "
        f"`TIME_BUDGET_S={s.time_budget_s:g}`): {faces.found} faces found, {len(faces)} stored "
        f"(capped: {bool(faces.flags & CAPPED)}, out of time: {bool(faces.flags & OUT_OF_TIME)}) in "
        f"{seconds:.1f} s; resident memory at most {peak[0] - before:.0f} MiB above what it was before "
        f"(the upload, the decoded photo, the detection image, a batch of chips), {rss_mib() - before:.0f} "
        "MiB after."
    )


# -- 4. grouping cost at scale -------------------------------------------------------------------------------


def real_statistics(photos: list[DevPhoto], faces: list[ImageFaces]) -> dict[str, np.ndarray]:
    by_person: dict[str, list[np.ndarray]] = {}
    for photo, found in zip(photos, faces, strict=True):
        if photo.label != "group" and len(found):
            by_person.setdefault(photo.label, []).append(found.descriptors[0])
    means = np.stack([np.mean(v, axis=0) for v in by_person.values()])
    residuals = np.concatenate([np.stack(v) - np.mean(v, axis=0) for v in by_person.values() if len(v) > 1])
    real = np.concatenate([np.stack(v) for v in by_person.values()])
    labels = np.concatenate([[i] * len(v) for i, v in enumerate(by_person.values())])
    # Residuals around a mean of n faces shrink by sqrt((n-1)/n); 5 faces a person on average.
    within = residuals.std(axis=0, ddof=1) * np.sqrt(5 / 4)
    # Drawing the means dimension by dimension spreads people further apart than the real, correlated
    # ones: scale the spread so that two people are as far apart as the real ones (median distance).
    real_other = float(
        np.median(
            [
                np.linalg.norm(real[a] - real[b])
                for a in range(len(real))
                for b in range(a)
                if labels[a] != labels[b]
            ]
        )
    )
    between = means.std(axis=0, ddof=1)
    scale = np.sqrt(max(real_other**2 / 2 - (within**2).sum(), 1e-6) / (between**2).sum())
    return {
        "centre": means.mean(axis=0),
        "between": between * scale,
        "within": within,
        "real": real,
        "labels": labels,
    }


def synthetic(
    stats: dict[str, np.ndarray], total: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors, person per face; -1 for strangers): 70% of the faces in people of 2 to ~500
    faces (log-normal sizes), 30% strangers seen once."""
    strangers = int(total * 0.3)
    sizes: list[int] = []
    while sum(sizes) < total - strangers:
        sizes.append(int(np.clip(rng.lognormal(2.0, 1.1), 2, 500)))
    sizes[-1] -= sum(sizes) - (total - strangers)
    means = stats["centre"] + stats["between"] * rng.standard_normal((len(sizes) + strangers, 128))
    labels = np.concatenate([np.repeat(np.arange(len(sizes)), sizes), -np.ones(strangers, np.int64)])
    centre_of = np.concatenate([np.repeat(np.arange(len(sizes)), sizes), len(sizes) + np.arange(strangers)])
    vectors = means[centre_of] + stats["within"] * rng.standard_normal((total, 128))
    return vectors.astype(np.float32), labels


def distance_stats(vectors: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """Median distance of same-person pairs (two faces of each person) and of random pairs of faces
    of different people (strangers, label -1, are each their own person)."""
    members: dict[int, list[int]] = {}
    for row, label in enumerate(labels.tolist()):
        if label >= 0:
            members.setdefault(label, []).append(row)
    same = [rng.choice(rows, 2, replace=False) for rows in members.values() if len(rows) > 1]
    d_same = [float(np.linalg.norm(vectors[a] - vectors[b])) for a, b in same]
    i = rng.integers(0, len(vectors), 20000)
    j = rng.integers(0, len(vectors), 20000)
    other = (i != j) & ((labels[i] != labels[j]) | (labels[i] < 0))
    d_other = np.linalg.norm(vectors[i[other]] - vectors[j[other]], axis=1)
    return float(np.median(d_same)), float(np.median(d_other))


def rss_mib() -> float:
    """The process's resident memory now (MiB)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / (1 << 20)


def scale_section(stats: dict[str, np.ndarray], total: int, adds: int, regroup_total: int) -> str:
    rng = np.random.default_rng(0)
    settings = GroupingSettings()
    vectors, labels = synthetic(stats, total + adds, rng)
    real_same, real_other = distance_stats(stats["real"], stats["labels"], rng)
    syn_same, syn_other = distance_stats(vectors[:total], labels[:total], rng)
    order = rng.permutation(total + adds)
    base, extra = order[:total], order[total:]
    # The collection as grouped: each synthetic person with at least min_faces faces is a person.
    sizes = np.bincount(labels[base][labels[base] >= 0])
    people = [Person(int(p) + 1) for p in np.nonzero(sizes >= settings.min_faces)[0]]
    grouped = {p.id - 1 for p in people}
    faces = [
        Face(int(row), 0, int(labels[row]) + 1 if int(labels[row]) in grouped else None)
        for row in base.tolist()
    ]
    before = rss_mib()
    started = time.perf_counter()
    grouping = PeopleGrouping(settings, faces, vectors[base], people)
    built = time.perf_counter() - started
    memory = rss_mib() - before
    progress(f"grouping of {total} faces built in {built:.1f} s")
    add_times = []
    joined = 0
    for row in extra.tolist():
        started = time.perf_counter()
        grouping.add([(row, 0)], vectors[row : row + 1])
        add_times.append(time.perf_counter() - started)
        person = grouping.person_of((row, 0))
        joined += person is not None and person - 1 == labels[row]
    progress(f"{adds} adds timed")
    started = time.perf_counter()
    grouping.retry_unassigned()
    retried = time.perf_counter() - started
    progress(f"retry pass over {len(grouping.unassigned())} waiting faces: {retried:.1f} s")
    small = PeopleGrouping(settings, faces[:regroup_total], vectors[base[:regroup_total]], people)
    started = time.perf_counter()
    small.regroup()
    regrouped = time.perf_counter() - started
    progress(f"regrouping of {regroup_total} faces: {regrouped:.1f} s")
    known = sum(1 for row in extra.tolist() if labels[row] >= 0 and int(labels[row]) in grouped)
    lines = [
        f"Synthetic faces: {total:,} grouped ({len(people):,} people of >= {settings.min_faces} faces, "
        f"{int((labels[base] < 0).sum()):,} strangers), median distance same person "
        f"{syn_same:.3f} / different people {syn_other:.3f} "
        f"(real faces-dev: {real_same:.3f} / {real_other:.3f}).",
        "",
        "| operation | time |",
        "|---|---|",
        f"| build from the records ({total:,} faces into FAISS) | {built:.1f} s, {memory:.0f} MiB more RSS |",
        f"| add one face (median / p90 / max over {adds}) | {ms(add_times)} / "
        f"{max(add_times) * 1000:.0f} ms |",
        f"| pass over the unassigned ({len(grouping.unassigned()):,} left waiting) | {retried:.1f} s |",
        f"| full regrouping of {regroup_total:,} faces | {regrouped:.1f} s |",
        "",
        f"Of the {adds} added faces, {joined} joined their synthetic person "
        f"({known} belonged to a grouped person).",
    ]
    return "\n".join(lines)


def persisted_section(stats: dict[str, np.ndarray], total: int, adds: int) -> str:
    """The people step's own work at ``total`` faces through the gateway's persistence
    (gateway/people/memory.py over PostgreSQL): the records loaded whole by a gateway process, one
    image's face added and written (as the step does, less the call to the faces service and the
    crop), a second process following those adds, and an image deleted. The in-memory add of the
    same faces, measured in the same run, is the reference."""
    from gateway.people import store
    from gateway.people.faces import Changes
    from gateway.people.memory import PeopleMemory
    from gateway.people.schema import COMPONENT, MIGRATIONS
    from gateway.people.store import NewFace
    from services.common.postgres.database import (
        EmbeddedPostgres,
        PostgresComponent,
        PostgresSettings,
        ensure_database,
    )

    rng = np.random.default_rng(1)
    settings = GroupingSettings()
    vectors, labels = synthetic(stats, total + adds, rng)
    sizes = np.bincount(labels[:total][labels[:total] >= 0])
    people = {int(p) + 1: Person(int(p) + 1) for p in np.nonzero(sizes >= settings.min_faces)[0]}
    box = (100.0, 100.0, 300.0, 300.0)
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pgdata")
        dsn = ensure_database(server.start(), "people")
        db = PostgresComponent(PostgresSettings(dsn=dsn), {COMPONENT: MIGRATIONS}, "people-bench")
        db.open()
        try:
            started = time.perf_counter()
            for start in range(0, total, 10_000):
                rows = range(start, min(start + 10_000, total))
                new = [NewFace(row, 0, box, 1.0, vectors[row]) for row in rows]
                db.run(lambda cur, new=new: store.insert_faces(cur, new, 1))
            faces = {
                (row, 0): Face(row, 0, int(labels[row]) + 1 if int(labels[row]) + 1 in people else None)
                for row in range(total)
            }
            db.run(lambda cur: store.persist(cur, Changes(faces=faces, people=people), 1))
            db.run(lambda cur: store.write_state(cur, 1, max(people) + 1))
            written = time.perf_counter() - started
            progress(f"{total} faces written in {written:.1f} s")
            first, second = PeopleMemory(db, settings), PeopleMemory(db, settings)
            started = time.perf_counter()
            first.read(len)
            loaded = time.perf_counter() - started
            second.read(len)
            reference = PeopleGrouping(settings, list(faces.values()), vectors[:total], people.values())
            in_memory, persisted = [], []
            for row in range(total, total + adds):
                started = time.perf_counter()
                reference.add([(row, 0)], vectors[row : row + 1])
                in_memory.append(time.perf_counter() - started)
                new_face = [NewFace(row, 0, box, 1.0, vectors[row])]

                def operation(g: PeopleGrouping, row: int = row) -> Changes:
                    return g.add([(row, 0)], vectors[row : row + 1])

                started = time.perf_counter()
                first.write(operation, lambda cur, gen, f=new_face: store.insert_faces(cur, f, gen))
                persisted.append(time.perf_counter() - started)
            started = time.perf_counter()
            second.read(len)
            followed = time.perf_counter() - started
            deletes = []
            for row in range(total, total + min(adds, 50)):
                started = time.perf_counter()
                first.write(lambda g, row=row: g.remove_images([row]))
                deletes.append(time.perf_counter() - started)
            progress(f"{adds} adds through PostgreSQL timed")
        finally:
            db.close()
            server.release()
    return "\n".join(
        [
            f"{total:,} synthetic faces (as above) in PostgreSQL (the embedded server, same machine), "
            "each add one image with one face, as the `people` step writes it:",
            "",
            "| operation | time |",
            "|---|---|",
            f"| {total:,} faces written (bulk, 10,000 a statement) | {written:.1f} s |",
            f"| a gateway process loads them whole (first use) | {loaded:.1f} s |",
            f"| add one face in memory only (reference; median / p90 over {adds}) | {ms(in_memory)} ms |",
            f"| add one face and write it (lock, catch up, place, write, commit; median / p90) | "
            f"{ms(persisted)} ms |",
            f"| a second process follows those {adds} adds (one catch-up) | {followed * 1000:.0f} ms |",
            f"| delete an image's face and write it (median / p90 over {len(deletes)}) | {ms(deletes)} ms |",
        ]
    )


def main() -> int:
    faiss.omp_set_num_threads(1)  # one core, as the figures say
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="a quick run: fewer photos and faces")
    parser.add_argument("--faces-dev", type=Path, default=FACES_DEV)
    parser.add_argument(
        "--people-only", action="store_true", help="only the grouping at scale and through PostgreSQL"
    )
    args = parser.parse_args()
    photos = dev_photos(args.faces_dev)
    if not photos:
        print(f"**Not measured**: faces-dev not found at {args.faces_dev}.")
        return 0
    if args.small:  # three photos of each person, and the group photos
        first: dict[str, int] = {}
        for i, photo in enumerate(photos):
            first.setdefault(photo.label, i)
        photos = [p for i, p in enumerate(photos) if p.label == "group" or i - first[p.label] < 3]
    feature = load_feature()
    s = feature.settings
    if args.people_only:
        stats = real_statistics(photos, extract(feature, photos))
        total = 5_000 if args.small else 100_000
        print("### Grouping at scale\n")
        print(scale_section(stats, total, adds=30 if args.small else 200, regroup_total=2_000))
        print("\n### Grouping through PostgreSQL\n")
        print(persisted_section(stats, total, adds=30 if args.small else 200))
        return 0
    progress(f"{len(photos)} faces-dev photos")
    started = time.perf_counter()
    faces = extract(feature, photos)
    extract_seconds = time.perf_counter() - started
    found = [len(f) for f in faces]
    table, chosen = quality_table(photos, faces, shuffles=1 if args.small else 5)
    default = GroupingSettings()
    faceless = photo_paths(PHOTOS, limit=3 if args.small else 20)
    missed = sum(1 for n in found if n == 0)
    print(
        f"Faces-dev: {len(photos)} photos, {sum(found)} faces found ({missed} photos without one), "
        f"{extract_seconds:.1f} s in all. Detection settings: long side <= {s.max_side} px, minimum face "
        f"max({s.min_face_size:g} px, {s.min_face_fraction:g} x long side), fallback `{s.fallback}`, "
        f"at most {s.max_faces} faces.\n"
    )
    print("### People found on faces-dev\n")
    print(
        f"Defaults (bold): max_distance {default.max_distance}, min_faces {default.min_faces}, "
        f"{default.neighbours} neighbours. In file order, after regrouping: {chosen.line()}.\n"
    )
    print(table)
    print("\n### Cost per photo (one core; median / p90 ms)\n")
    print(cost_section(feature, photos, faceless, limit=4 if args.small else None))
    print("\n### The slower pass, alone\n")
    print(
        fallback_section(
            feature,
            photos,
            faceless,
            limit=3 if args.small else len(photos),
            cnn_limit=2 if args.small else 12,
        )
    )
    print("\n### A crowd\n")
    print(crowd_section(5, 8) if args.small else crowd_section(15, 20))
    print("\n### Grouping at scale\n")
    stats = real_statistics(photos, faces)
    total = 5_000 if args.small else 100_000
    print(
        scale_section(
            stats, total, adds=30 if args.small else 200, regroup_total=2_000 if args.small else total
        )
    )
    print("\n### Grouping through PostgreSQL\n")
    print(persisted_section(stats, total, adds=30 if args.small else 200))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Duplicate groups: copies of the shared photos grouped through the gateway, and the cost per add.

Every shared photo and its 4 edited copies (JPEG quality 30, half size, a crop keeping 80% of the
area, mirrored; ambience_support/copy_groups.py, the same bar as
tests/gateway/test_duplicate_groups_photos.py) added one by one through a gateway with its default
duplicate settings, over phash, color and local_features (RootSIFT: no weights) as processes and an
embedded PostgreSQL. Then ``/duplicate_groups {"kind": "copies"}``: every copy should be in its
source's group, and no group should hold two different photos (byte-identical files under two
names are one photo; recoloured versions of one shot are different photos).

Also measured: what the rules see (colour distance, local-feature inliers and thumbnail alignment
of true copies against the recoloured shots and the best unrelated match), and what an add costs:
the whole add through the gateway, and, for a sample of uploads against the full collection, each
call the copies link makes (phash duplicate search, local-feature verification, the colour check,
the crop alignment) made directly.

With ``--after-import`` the same images are written to the services' stores by ``ambience import``
instead (no gateway add, so no add-time links), their previews made from the files
(``POST /thumbnails/{id}``), and the groups come from ``/duplicate_groups/rebuild {"kind":
"copies"}``: the phash pairs over the stored hashes, a local-feature search of every stored image
for crops and the thumbnail alignment, in the background; its wall time is measured.

    python -m bench.duplicate_groups_bench [--small] [--after-import]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from ambience_support.copy_groups import (
    DAY_AND_NIGHT,
    RECOLOURED_SERIES,
    SOURCE,
    Upload,
    Verdict,
    add_through_gateway,
    copy_uploads,
    groups_of,
    judge,
)
from ambience_support.pg import scratch_server
from ambience_support.photos import PHOTOS, REPO, photo_paths
from ambience_support.processes import ambience_command
from ambience_support.stacks import QUICK_SERVICE_ENV, GatewayStack, launch_stack
from ambience_support.transforms import VARIANTS
from bench.timing import machine
from gateway.duplicates.alignment import grey_thumbnail, part_correlation
from gateway.settings import GatewaySettings
from services.common.postgres.database import ensure_database
from services.phash.hashing import hamming, mirror_hash, phash

#: The services of the stack (local_features with the weight-free descriptor, QUICK_SERVICE_ENV).
STACK = ["phash", "color", "local_features"]
#: Edits of one shot: different photos that local features (and phash, for the first) cannot tell
#: from a copy; the colour rule keeps them apart.
RELATED = (RECOLOURED_SERIES, DAY_AND_NIGHT)
#: Colour neighbours asked to find a crop's nearest images of other photos (past its own copies).
UNRELATED_LOOKUP = 20
#: Uploads whose link calls are timed directly against the full collection.
TIMED_SAMPLE = 40


def progress(message: str) -> None:
    print(f"[duplicate_groups_bench] {message}", file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> str:
    p50, p95 = np.percentile(values, [50, 95])
    return f"{p50:.0f} / {p95:.0f}"


def search_form(client: httpx.Client, url: str, route: str, data: bytes, fields: dict[str, str]) -> list:
    reply = client.post(
        f"{url}/{route}_get_similar_images_by_image_buffer", files={"image": ("q.jpg", data)}, data=fields
    )
    reply.raise_for_status()
    return reply.json()


def evidence(
    client: httpx.Client, urls: dict[str, str], uploads: list[Upload], settings: GatewaySettings
) -> list[str]:
    """What the rules see, asked of the services directly: the colour distance of each copy to its
    source and between the recoloured shots; the inliers of each 80% crop (the copy only local
    features find) to its source and to the best-matching unrelated photo."""
    by_photo: dict[str, dict[str, Upload]] = {}
    for u in uploads:
        by_photo.setdefault(u.photo, {})[u.kind] = u
    pairs = [(p[SOURCE].image_id, p[kind].image_id) for kind in VARIANTS for p in by_photo.values()]
    series = [by_photo[name][SOURCE] for name in RECOLOURED_SERIES if name in by_photo]
    recoloured = [
        (a.image_id, b.image_id)
        for i, a in enumerate(series)
        for b in series[i + 1 :]
        if a.content != b.content
    ]
    reply = client.post(urls["color"] + "/analysis/distances", json={"pairs": [*pairs, *recoloured]})
    reply.raise_for_status()
    colours = reply.json()["distances"]
    n = len(by_photo)
    lines = ["| pair | colour L1 (median / max) |", "|---|---|"]
    for i, kind in enumerate(VARIANTS):
        values = colours[i * n : (i + 1) * n]
        lines.append(f"| {kind} copy and its source | {np.median(values):,.0f} / {max(values):,.0f} |")
    if recoloured:
        values = colours[len(pairs) :]
        lines.append(f"| recoloured edits of one shot ({len(recoloured)} pairs) | min {min(values):,.0f} |")
    family_of = {name: n for n, family in enumerate(RELATED) for name in family}
    own, unrelated = [], []
    for name, photo in by_photo.items():
        hits = search_form(
            client, urls["local_features"], "local_features", photo["crop80"].data, {"min_matches": "4"}
        )
        own.append(max((h["matches"] for h in hits if h["image_id"] == photo[SOURCE].image_id), default=0))
        photo_of = {u.image_id: u.photo for u in uploads}
        others = [
            h["matches"]
            for h in hits
            if photo_of.get(h["image_id"], name) != name
            and family_of.get(photo_of.get(h["image_id"], ""), -1) != family_of.get(name, -2)
        ]
        unrelated.append(max(others, default=0))
    aligned_own, aligned_unrelated = alignment_evidence(client, urls, by_photo, family_of, settings)
    lines += [
        "",
        f"Local-feature inliers of an 80% crop (query) to its source: min {min(own)}, median "
        f"{np.median(own):.0f}; to the best-matching unrelated photo (not an edit of the same shot): max "
        f"{max(unrelated)}, median {np.median(unrelated):.0f} (searched with min_matches 4).",
        "",
        f"Thumbnail alignment of an 80% crop with its source: min {min(aligned_own):.3f}, median "
        f"{np.median(aligned_own):.3f}; with the {settings.copy_alignment_candidates} colour-nearest images "
        f"of other photos (not edits of its shot): max {max(aligned_unrelated):.3f}, median "
        f"{np.median(aligned_unrelated):.3f}.",
        "",
        f"Rules: phash within {settings.duplicate_distance:g} bits (image and mirror), or "
        f"{settings.duplicate_local_min_inliers} local-feature inliers, or thumbnails aligned at "
        f"{settings.copy_alignment_min_correlation:g} with one of the "
        f"{settings.copy_alignment_candidates} colour-nearest; no link beyond a colour L1 of "
        f"{settings.copy_max_color_distance:,.0f}.",
    ]
    return lines


def thumbnail(client: httpx.Client, gateway: str, image_id: int) -> np.ndarray:
    reply = client.get(f"{gateway}/thumbnails/{image_id}")
    reply.raise_for_status()
    return grey_thumbnail(reply.content)


def colour_neighbours(client: httpx.Client, color: str, image_id: int, k: int) -> list[int]:
    reply = client.post(f"{color}/color_get_similar_images_by_id", json={"image_id": image_id, "k": k + 1})
    reply.raise_for_status()
    return [h["image_id"] for h in reply.json() if h["image_id"] != image_id][:k]


def alignment_evidence(
    client: httpx.Client,
    urls: dict[str, str],
    by_photo: dict[str, dict[str, Upload]],
    family_of: dict[str, int],
    settings: GatewaySettings,
) -> tuple[list[float], list[float]]:
    """The thumbnail alignment of each 80% crop with its source, and with the colour-nearest stored
    images that are not the same photo nor an edit of its shot (what the add path would check)."""
    photo_of = {u.image_id: u.photo for photo in by_photo.values() for u in photo.values()}
    own, unrelated = [], []
    for name, photo in by_photo.items():
        crop = thumbnail(client, urls["gateway"], photo["crop80"].image_id)
        source = thumbnail(client, urls["gateway"], photo[SOURCE].image_id)
        own.append(part_correlation(crop, source, settings.copy_alignment_min_area).correlation)
        # the crop's own copies are its colour-nearest: look past them to the nearest others
        nearest = colour_neighbours(client, urls["color"], photo["crop80"].image_id, UNRELATED_LOOKUP)
        others = [
            other
            for other in nearest
            if photo_of.get(other, name) != name
            and family_of.get(photo_of.get(other, name), -1) != family_of.get(name, -2)
        ]
        for other in others[: settings.copy_alignment_candidates]:
            theirs = thumbnail(client, urls["gateway"], other)
            unrelated.append(part_correlation(crop, theirs, settings.copy_alignment_min_area).correlation)
    return own, unrelated or [float("nan")]


def link_costs(
    client: httpx.Client, urls: dict[str, str], uploads: list[Upload], settings: GatewaySettings
) -> list[tuple[str, list[float]]]:
    """Milliseconds of each call the copies link of an add makes, against the full collection."""
    sample = uploads[:: max(1, len(uploads) // TIMED_SAMPLE)][:TIMED_SAMPLE]
    searches = {
        "phash": {"distance_threshold": str(settings.duplicate_distance)},
        "local_features": {"min_matches": str(settings.duplicate_local_min_inliers)},
    }
    costs: dict[str, list[float]] = {"phash": [], "local_features": [], "color": [], "alignment": []}
    for upload in sample:
        hits = {}
        for name, fields in searches.items():
            started = time.perf_counter()
            hits[name] = search_form(client, urls[name], name, upload.data, fields)
            costs[name].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        pairs = [[upload.image_id, h["image_id"]] for h in hits["phash"]]  # the found copies
        client.post(urls["color"] + "/analysis/distances", json={"pairs": pairs}).raise_for_status()
        costs["color"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        mine = thumbnail(client, urls["gateway"], upload.image_id)
        for other in colour_neighbours(
            client, urls["color"], upload.image_id, settings.copy_alignment_candidates
        ):
            part_correlation(
                mine, thumbnail(client, urls["gateway"], other), settings.copy_alignment_min_area
            )
        costs["alignment"].append((time.perf_counter() - started) * 1000)
    return [
        ("phash duplicate search (image and mirror)", costs["phash"]),
        (
            f"local-feature verification (min_matches {settings.duplicate_local_min_inliers})",
            costs["local_features"],
        ),
        ("colour check of the found links (/analysis/distances)", costs["color"]),
        (
            f"crop alignment: colour-nearest {settings.copy_alignment_candidates} by id, their thumbnails, "
            "the correlation",
            costs["alignment"],
        ),
    ]


@contextmanager
def bench_stack(prepare: Callable[[Path], None] | None = None) -> Iterator[GatewayStack]:
    """The bench's services and gateway over an embedded PostgreSQL, all in a temporary folder;
    ``prepare(folder)`` runs before they start (the services' data under ``folder / "stack"``)."""
    with scratch_server() as (tmp, admin):
        (tmp / "stack").mkdir()
        if prepare is not None:
            prepare(tmp)
        stack = launch_stack(
            tmp / "stack", ensure_database(admin, "gw"), STACK, service_env=QUICK_SERVICE_ENV
        )
        try:
            yield stack
        finally:
            stack.stop()


def print_verdict(verdict: Verdict) -> None:
    """Per copy kind, how many are in their source's group; the groups that mix photos; the misses."""
    print("| copy | in its source's group |\n|---|---|")
    for kind in VARIANTS:
        print(f"| {kind} | {verdict.in_source_group[kind]}/{verdict.photos} |")
    print(f"\nGroups: {verdict.groups}; groups holding more than one photo: {len(verdict.mixed)}.")
    for names in verdict.mixed:
        print(f"- {', '.join(names)}")
    if verdict.missed:
        print(f"\nCopies outside their source's group: {', '.join(verdict.missed)}.")


def import_uploads(uploads: list[Upload], folder: Path, data_root: Path) -> float:
    """Every upload written to each service's store by ``ambience import`` (file name = id), with the
    stack's service settings; the wall seconds of the imports."""
    folder.mkdir()
    for upload in uploads:
        (folder / f"{upload.image_id}.jpg").write_bytes(upload.data)
    started = time.perf_counter()
    for name in STACK:
        command = ambience_command("import", name, str(folder), "--ids-from-filenames", "--no-progress")
        env = {**os.environ, **QUICK_SERVICE_ENV.get(name, {})}
        done = subprocess.run(
            [*command, "--data-dir", str(data_root)], cwd=REPO, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"ambience import {name} failed ({done.returncode}):\n{done.stderr}")
        progress(f"imported into {name}")
    return time.perf_counter() - started


def rebuild_copies(client: httpx.Client, url: str) -> tuple[dict, float]:
    """``/duplicate_groups/rebuild {"kind": "copies"}`` asked until it answers with its result (as
    its Retry-After says); the result and its wall seconds."""
    started = time.perf_counter()
    last_log = started
    while True:
        reply = client.post(url + "/duplicate_groups/rebuild", json={"kind": "copies"})
        if reply.status_code == 200:
            return reply.json(), time.perf_counter() - started
        if reply.status_code != 202:
            raise SystemExit(f"rebuild failed: {reply.status_code} {reply.text}")
        if time.perf_counter() - last_log > 30:
            last_log = time.perf_counter()
            progress(f"rebuild: {reply.json()['progress']}")
        time.sleep(float(reply.headers.get("Retry-After", "2")))


def mirror_evidence(uploads: list[Upload]) -> str:
    """How far the mirror a rebuild makes of a stored hash (phash's ``mirror_hash``, no pixels) is
    from the hash of the mirrored copy itself."""
    by_photo: dict[str, dict[str, Upload]] = {}
    for u in uploads:
        by_photo.setdefault(u.photo, {})[u.kind] = u

    def hashed(upload: Upload) -> np.ndarray:
        return phash(Image.open(io.BytesIO(upload.data)).convert("L"))

    bits = [
        hamming(mirror_hash(hashed(photo[SOURCE])), hashed(photo["mirrored"])) for photo in by_photo.values()
    ]
    return (
        f"The mirror of a source's stored hash to its mirrored copy's hash: min {min(bits)}, median "
        f"{np.median(bits):.0f}, max {max(bits)} bits (phash of the decoded files)."
    )


def after_import(paths: list[Path]) -> None:
    """The ``--after-import`` run: import, rebuild, judge (see the module docstring)."""
    uploads = list(copy_uploads(paths))
    imported_s: list[float] = []

    def imported(tmp: Path) -> None:
        imported_s.append(import_uploads(uploads, tmp / "images", tmp / "stack"))

    with bench_stack(imported) as stack, httpx.Client(timeout=300) as client:
        # the previews the page shows, made from the files: what the rebuild's alignment compares
        for upload in uploads:
            made = client.post(
                f"{stack.url}/thumbnails/{upload.image_id}", files={"image": ("a.jpg", upload.data)}
            )
            made.raise_for_status()
        result, rebuild_s = rebuild_copies(client, stack.url)
        verdict = judge(uploads, groups_of(client, stack.url))
    distinct = len({u.content for u in uploads})
    print(
        f"#### Copies groups after a bulk import\n\n{len(paths)} photo files ({distinct} distinct photos) "
        f"with {len(VARIANTS)} copies each ({len(uploads)} images), written by `ambience import` into "
        f"{', '.join(STACK)} ({imported_s[0]:.0f} s), then `/duplicate_groups/rebuild` of copies.\n"
    )
    print_verdict(verdict)
    print(f"\n{mirror_evidence(uploads)}")
    crops = result["crops"]
    print(
        f"\nRebuild: {rebuild_s:.0f} s wall ({rebuild_s / len(uploads):.2f} s per image), "
        f"{result['links']} links; crop search of {crops['images']} stored images: {crops['searched']} "
        f"searched, {crops['failed']} failed, {crops['links']} crop links, "
        f"{GatewaySettings().rebuild_crop_searches} searches at a time; {result.get('aligned', 0)} links "
        "from aligned thumbnails."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="6 photos (smoke test)")
    parser.add_argument(
        "--after-import",
        action="store_true",
        help="write the images with `ambience import` and group them by a rebuild (no gateway adds)",
    )
    args = parser.parse_args()
    print(f"Machine: {machine()}.\n")
    paths = photo_paths(PHOTOS)
    if not paths:
        print(f"**Not measured**: no photos at {PHOTOS}.")
        return
    if args.small:
        paths = [p for p in paths if p.name in RECOLOURED_SERIES][:4] + paths[:2]
    if args.after_import:
        after_import(paths)
        return
    settings = GatewaySettings()
    with bench_stack() as stack, httpx.Client(timeout=300) as client:
        urls = {name: svc.url for name, svc in stack.services.items()} | {"gateway": stack.url}
        total = len(paths) * (1 + len(VARIANTS))
        started = time.perf_counter()
        uploads, seconds = add_through_gateway(
            client,
            stack.url,
            copy_uploads(paths),
            lambda n: n % 50 == 0 and progress(f"{n}/{total} added"),
        )
        added_s = time.perf_counter() - started
        verdict = judge(uploads, groups_of(client, stack.url))
        progress("groups judged; measuring the rules' evidence")
        seen = evidence(client, urls, uploads, settings)
        progress("timing the link calls")
        costs = link_costs(client, urls, uploads, settings)
    distinct = len({u.content for u in uploads})
    print(
        f"#### Copies groups\n\n{len(paths)} photo files ({distinct} distinct photos) with {len(VARIANTS)} "
        f"copies each ({len(uploads)} images), added one by one through the gateway.\n"
    )
    print_verdict(verdict)
    print("\n#### What the rules see\n")
    print("\n".join(seen))
    print("\n#### Cost per add\n")
    print(f"{len(uploads)} adds in {added_s:.0f} s.\n")
    print("| step | ms p50 / p95 |\n|---|---|")
    add_ms = percentiles([s * 1000 for s in seconds])
    print(f"| add through the gateway (3 services, catalog, copies link) | {add_ms} |")
    print(
        f"\nThe copies link's calls made directly for {min(TIMED_SAMPLE, len(uploads))} uploads against "
        f"the full collection ({len(uploads)} images):\n"
    )
    print("| call | ms p50 / p95 |\n|---|---|")
    for label, values in costs:
        print(f"| {label} | {percentiles(values)} |")


if __name__ == "__main__":
    main()

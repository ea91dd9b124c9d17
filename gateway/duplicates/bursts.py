"""Stacks: the frames of one burst, and one shot saved in two formats, as the ``bursts`` links.

Two images are stacked (linked in ``bursts``, at their distance in seconds) when they are

- **one shot in two formats**: photos with the same file name up to its extension (and folder, as
  the client sent it; case ignored: the catalog's base-name index, gateway/live_photos.py), of
  different formats (RAW+JPEG, HEIC+JPEG), whose EXIF times agree (the same exposure: a camera
  stamps both files of a shot alike). No picture check: the name and the time say it;
- **frames of one burst**: photos whose exposure times (DateTimeOriginal and its fraction, else the
  capture time) differ (a copy has its original's) by at most ``BURST_WINDOW_S`` (1 s; to the
  second where either has no fraction), and that look alike: linked as near shots (``similar``,
  the embedding source within ``SIMILAR_DISTANCE``) or within ``DUPLICATE_DISTANCE`` phash bits of
  each other (``/analysis/distances`` of the phash service: without an embedding service, a burst
  on a tripod is as near as a copy). Frames further apart chain through the frames between.

Bursts stay out of ``copies`` (the exposure rule, gateway/duplicates/exposure.py) and need not be
``similar`` groups: an image may be in a stack and in a copies group at once. Each stack's cover is
chosen by ``STACK_COVER_RULES`` (the format priority, then the sharpest frame).

The candidates come from the catalog's facts (an index of the exposure time, the base-name index);
:class:`BurstCandidates` reads them, :class:`BurstLinks` checks the pictures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.duplicates.exposure import Exposure, different_exposures, recorded_exposure
from gateway.duplicates.groups import Link
from gateway.duplicates.links import LinkStore
from gateway.live_photos import BASE_NAME_SQL, base_name
from gateway.proxy import ServiceClients
from gateway.settings import GatewaySettings
from gateway.sources import SourceUnavailable
from services.common.postgres.database import Cursor, SqlRunner

#: Pairs per /analysis/distances call (the services' MAX_DISTANCE_PAIRS).
DISTANCE_PAIRS_PER_CALL = 10_000

FACT_COLUMNS = ("kind", "format", "file_name", "captured_at", "exposed_at", "exposure_subsecond")
_SELECT = f"SELECT image_id, {', '.join(FACT_COLUMNS)} FROM gateway_image_info"
_WHEN = "coalesce(exposed_at, captured_at)"


def instant(info: dict[str, Any]) -> Exposure | None:
    """When the shot was taken: the exposure time, else the capture time (to the second)."""
    found = recorded_exposure(info)
    if found is not None:
        return found
    when = info.get("captured_at")
    return (when, False) if isinstance(when, datetime) else None


def seconds_apart(a: Exposure, b: Exposure) -> float:
    """Seconds between two instants, at the fraction when both have one, else to the second."""
    if a[1] and b[1]:
        return abs((a[0] - b[0]).total_seconds())
    return abs((a[0].replace(microsecond=0) - b[0].replace(microsecond=0)).total_seconds())


def one_shot_two_formats(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Photos of one base name, of different formats, taken at one instant."""
    if (
        a.get("kind") != "photo"
        or b.get("kind") != "photo"
        or not a.get("file_name")
        or not b.get("file_name")
    ):
        return False
    if base_name(a["file_name"]) != base_name(b["file_name"]):
        return False
    if not a.get("format") or not b.get("format") or a["format"].upper() == b["format"].upper():
        return False
    first, second = instant(a), instant(b)
    return first is not None and second is not None and not different_exposures(first, second)


def frames_apart(a: dict[str, Any], b: dict[str, Any], window: float) -> float | None:
    """Seconds between two photos that may be frames of one burst (different instants at most
    ``window`` apart), else None."""
    if a.get("kind") != "photo" or b.get("kind") != "photo":
        return None
    first, second = instant(a), instant(b)
    if first is None or second is None or not different_exposures(first, second):
        return None
    gap = seconds_apart(first, second)
    return gap if gap <= window else None


class BurstCandidates:
    """The catalog's facts a stack is found by."""

    def __init__(self, db: SqlRunner) -> None:
        self.db = db

    @staticmethod
    def _rows(cur: Cursor) -> dict[int, dict[str, Any]]:
        return {int(row[0]): dict(zip(FACT_COLUMNS, row[1:], strict=True)) for row in cur.fetchall()}

    def facts(self, image_id: int) -> dict[str, Any] | None:
        def run(cur: Cursor) -> dict[str, Any] | None:
            cur.execute(_SELECT + " WHERE image_id = %s", (image_id,))
            return self._rows(cur).get(image_id)

        return self.db.run(run)

    def near(self, image_id: int, info: dict[str, Any], window: float) -> dict[int, dict[str, Any]]:
        """Other photos taken within ``window`` (plus a second: times without a fraction) of
        ``info``'s instant, or of its base name."""
        when = instant(info)
        slack = math.ceil(window) + 1

        def run(cur: Cursor) -> dict[int, dict[str, Any]]:
            found: dict[int, dict[str, Any]] = {}
            if when is not None:
                cur.execute(
                    _SELECT + f" WHERE {_WHEN} BETWEEN %s - make_interval(secs => %s)"
                    " AND %s + make_interval(secs => %s) AND image_id <> %s AND kind = 'photo'",
                    (when[0], slack, when[0], slack, image_id),
                )
                found.update(self._rows(cur))
            if info.get("file_name"):
                cur.execute(
                    _SELECT + f" WHERE {BASE_NAME_SQL} = %s AND image_id <> %s AND kind = 'photo'",
                    (base_name(info["file_name"]), image_id),
                )
                found.update(self._rows(cur))
            return found

        return self.db.run(run)

    def timed(self) -> list[tuple[int, dict[str, Any]]]:
        """Every photo with a time, in time order."""

        def run(cur: Cursor) -> list[tuple[int, dict[str, Any]]]:
            cur.execute(_SELECT + f" WHERE {_WHEN} IS NOT NULL AND kind = 'photo' ORDER BY {_WHEN}, image_id")
            return list(self._rows(cur).items())

        return self.db.run(run)

    def same_base_names(self) -> list[tuple[int, int]]:
        """Pairs of photos with one base name (smaller id first)."""

        def run(cur: Cursor) -> list[tuple[int, int]]:
            cur.execute(
                f"SELECT a.image_id, b.image_id FROM gateway_image_info a JOIN gateway_image_info b"
                f" ON {BASE_NAME_SQL.replace('file_name', 'a.file_name')}"
                f" = {BASE_NAME_SQL.replace('file_name', 'b.file_name')}"
                " AND a.image_id < b.image_id WHERE a.kind = 'photo' AND b.kind = 'photo'"
            )
            return [(int(a), int(b)) for a, b in cur.fetchall()]

        return self.db.run(run)


class BurstLinks:
    """The ``bursts`` links of an added image, and of every image (a rebuild)."""

    def __init__(
        self,
        settings: GatewaySettings,
        clients: ServiceClients,
        enabled: set[str],
        candidates: BurstCandidates,
        links: LinkStore,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.enabled = enabled
        self.candidates = candidates
        self.links = links

    async def of(self, image_id: int) -> list[tuple[int, float]]:
        """What an added image is stacked with (its facts and similar links recorded before)."""
        window = self.settings.burst_window_s
        info = await run_in_threadpool(self.candidates.facts, image_id)
        if info is None or info.get("kind") != "photo":
            return []
        others = await run_in_threadpool(self.candidates.near, image_id, info, window)
        found: dict[int, float] = {}
        frames: dict[int, float] = {}
        for other, theirs in others.items():
            if one_shot_two_formats(info, theirs):
                found[other] = 0.0
            elif (gap := frames_apart(info, theirs, window)) is not None:
                frames[other] = gap
        looked_alike = await self.alike([(min(image_id, o), max(image_id, o)) for o in frames])
        found.update(
            {o: g for o, g in frames.items() if (min(image_id, o), max(image_id, o)) in looked_alike}
        )
        return sorted((o, round(g, 3)) for o, g in found.items())

    async def among_all(self) -> list[Link]:
        """Every stack link of the catalog's photos (a rebuild)."""
        window = self.settings.burst_window_s
        timed = await run_in_threadpool(self.candidates.timed)
        info = dict(timed)
        frames: dict[tuple[int, int], float] = {}
        start = 0
        for n, (image, mine) in enumerate(timed):
            when = instant(mine)
            assert when is not None
            while (when[0] - instant(timed[start][1])[0]).total_seconds() > window + 1:  # type: ignore[index]
                start += 1
            for other, theirs in timed[start:n]:
                gap = frames_apart(mine, theirs, window)
                if gap is not None:
                    frames[(min(image, other), max(image, other))] = gap
        alike = await self.alike(sorted(frames))
        links = {pair: gap for pair, gap in frames.items() if pair in alike}
        named = await run_in_threadpool(self.candidates.same_base_names)
        missing = sorted({i for pair in named for i in pair} - info.keys())
        for image in missing:
            found = await run_in_threadpool(self.candidates.facts, image)
            if found is not None:
                info[image] = found
        for a, b in named:
            if a in info and b in info and one_shot_two_formats(info[a], info[b]):
                links[(a, b)] = 0.0
        return [(a, b, round(g, 3)) for (a, b), g in sorted(links.items())]

    async def alike(self, pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
        """Those of ``pairs`` (smaller id first) that look alike: linked as near shots, or within
        ``DUPLICATE_DISTANCE`` phash bits. A phash service that does not answer raises (the step is
        tried again later)."""
        if not pairs:
            return set()
        ids = sorted({i for pair in pairs for i in pair})
        similar = await run_in_threadpool(self.links.touching, "similar", ids)
        alike = {(min(a, b), max(a, b)) for a, b, _ in similar} & set(pairs)
        rest = [pair for pair in pairs if pair not in alike]
        if not rest or "phash" not in self.enabled:
            return alike
        for start in range(0, len(rest), DISTANCE_PAIRS_PER_CALL):
            chunk = rest[start : start + DISTANCE_PAIRS_PER_CALL]
            result = await self.clients.call(
                "phash", "/analysis/distances", json={"pairs": [list(p) for p in chunk]}
            )
            if not result.ok:
                raise SourceUnavailable(f"phash could not compare burst frames: {result.detail}")
            limit = self.settings.duplicate_distance
            alike.update(
                p
                for p, d in zip(chunk, result.body["distances"], strict=True)
                if d is not None and d <= limit
            )
        return alike


def stack_kind(members: Iterable[int], info: dict[int, dict[str, Any]]) -> str:
    """``formats`` when the stack is one shot in several formats, else ``burst``."""
    names = {base_name(info.get(m, {}).get("file_name") or f"#{m}") for m in members}
    formats = {(info.get(m, {}).get("format") or "").upper() for m in members}
    return "formats" if len(names) == 1 and len(formats) > 1 else "burst"

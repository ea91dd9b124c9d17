"""Every image's library row and place: the ``place`` step that follows each add, and the backfill
for images added before it existed.

**The step** (an :class:`~gateway.steps.AfterAddStep`, after the ``facts`` step) makes the image's
row from the facts recorded with the add: capture time (else the time the add was received),
kind, size, GPS position, and the position geocoded offline into city, region and country
(gateway/places.py; the index loads on the first position, about a second, once). A geocoder that
cannot load (its data file missing) does not fail the step: the row is kept unplaced, for the
backfill to place once it can, and the steps after this one go on.

**The backfill** (``POST /places/backfill``, ``ambience places backfill``; also started when the
gateway starts and finds work) runs in the background, a chunk of rows at a time, with progress:
first the rows of added images the library has none of (images added before the library kept
rows; the ledger's last change of an image stands in for when it was added), then the rows not
geocoded yet. It is safe beside adds and deletes: a row is written only for an image the ledger
still holds as added (gateway/library/store.py), and geocoding a row twice gives the same place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.image_facts import facts_from_json
from gateway.library.places import LibraryPlaces
from gateway.library.query import position_of, row_from_facts
from gateway.library.store import LibraryStore
from gateway.places import Geocoder, Place
from gateway.steps import AddedImage, StepFailed
from services.common.errors import DatabaseUnavailable

log = logging.getLogger("ambience.gateway")

#: The facts key of the time the gateway received the add (ISO, UTC).
RECEIVED_AT = "received_at"
#: Rows the backfill reads, geocodes and writes at once.
BACKFILL_CHUNK = 2000
#: Seconds between progress lines in the log.
LOG_EVERY_S = 10.0


def received_at(facts: dict[str, Any]) -> datetime:
    """When the add was received, as recorded with its facts; now for an add recorded without."""
    text = facts.get(RECEIVED_AT)
    if isinstance(text, str):
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(text)
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.now(UTC)


def locate(geocoder: Geocoder, positions: list[tuple[float, float]]) -> list[Place | None] | None:
    """The places of ``positions``; None when the geocoder cannot work (logged)."""
    try:
        return geocoder.locate_many(positions)
    except Exception as exc:  # its data missing or unreadable: places wait for the backfill
        log.warning("places: cannot geocode (%s: %s); the rows stay unplaced", type(exc).__name__, exc)
        return None


class PlaceStep:
    """The ``place`` step: the image's library row, its position geocoded."""

    name = "place"
    uses_upload = False
    needs_stored = False

    def __init__(self, store: LibraryStore, geocoder: Geocoder) -> None:
        self.store = store
        self.geocoder = geocoder

    async def run(self, image: AddedImage) -> None:
        if image.facts is None:
            raise StepFailed("no facts were recorded with the add")
        facts = facts_from_json(image.facts)
        position = position_of(facts)
        places = await run_in_threadpool(locate, self.geocoder, [position]) if position else [None]
        row = row_from_facts(
            image.image_id, facts, received_at(image.facts), places[0] if places else None, places is not None
        )
        await run_in_threadpool(self.store.record, [row])

    async def forget(self, image_id: int) -> None:
        await run_in_threadpool(self.store.forget, image_id)


@dataclass
class BackfillProgress:
    #: rows (images without a library row), places (rows not geocoded yet)
    phase: str = "rows"
    done: int = 0
    total: int = 0


class PlacesBackfill:
    """One backfill at a time, in the background; :meth:`status` is what the routes answer."""

    def __init__(
        self, store: LibraryStore, places: LibraryPlaces, geocoder: Geocoder, chunk: int = BACKFILL_CHUNK
    ) -> None:
        self.store = store
        self.places = places
        self.geocoder = geocoder
        self.chunk = chunk
        self.progress = BackfillProgress()
        self.task: asyncio.Task[dict[str, Any]] | None = None
        self.last: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def status(self) -> dict[str, Any]:
        """``{"status": "running", "progress"}`` or ``{"status": "idle", "last"}`` (the last
        backfill's result, or its error; None before the first)."""
        if self.running:
            return {"status": "running", "progress": asdict(self.progress)}
        return {"status": "idle", "last": self.last}

    def start(self) -> dict[str, Any]:
        """Start a backfill unless one runs; its status."""
        if not self.running:
            self.progress = BackfillProgress()
            self.task = asyncio.create_task(self._run(), name="places-backfill")
        return self.status()

    async def start_if_needed(self) -> None:
        """At start-up: a backfill when images lack a row or a place (nothing when the catalog is
        unreachable: a later POST starts it)."""
        with contextlib.suppress(DatabaseUnavailable):
            missing, unplaced = await run_in_threadpool(self.places.to_do)
            if missing or unplaced:
                log.info(
                    "places: %d image(s) without a library row, %d not placed: backfilling", missing, unplaced
                )
                self.start()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def _run(self) -> dict[str, Any]:
        started = time.monotonic()
        try:
            result = await self._backfill()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("places: the backfill failed: %s", exc)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.monotonic() - started, 3)
        self.last = result
        return result

    async def _backfill(self) -> dict[str, Any]:
        missing, unplaced = await run_in_threadpool(self.places.to_do)
        self.progress.total = missing + unplaced
        logged = time.monotonic()
        added = placed = 0
        after = -1
        while True:  # images without a row: their rows, geocoded at once
            batch = await run_in_threadpool(self.places.missing_rows, after, self.chunk)
            if not batch:
                break
            after = batch[-1].image_id
            facts = [facts_from_json(b.facts) for b in batch]
            positions = [position_of(f) for f in facts]
            found = await self._locate([p for p in positions if p is not None])
            places = iter(found) if found is not None else None
            rows = []
            for b, f, position in zip(batch, facts, positions, strict=True):
                place = next(places) if places is not None and position is not None else None
                rows.append(row_from_facts(b.image_id, f, b.added_at, place, places is not None))
            added += await run_in_threadpool(self.store.record, rows, True)
            placed += len(found or [])
            self.progress.done += len(batch)
            logged = self._log(logged)
        self.progress.phase = "places"
        after = -1
        while True:  # rows not geocoded yet
            todo = await run_in_threadpool(self.places.unplaced, after, self.chunk)
            if not todo:
                break
            after = todo[-1][0]
            with_position = [(i, lat, lon) for i, lat, lon in todo if lat is not None and lon is not None]
            found = await self._locate([(lat, lon) for _, lat, lon in with_position])
            if found is None:
                raise RuntimeError("the geocoder cannot load its places; see the gateway log")
            by_id: dict[int, Place | None] = {i: p for (i, _, _), p in zip(with_position, found, strict=True)}
            await run_in_threadpool(self.places.set_places, [(i, by_id.get(i)) for i, _, _ in todo])
            placed += len(with_position)
            self.progress.done += len(todo)
            logged = self._log(logged)
        return {"rows_added": added, "placed": placed}

    async def _locate(self, positions: list[tuple[float, float]]) -> list[Place | None] | None:
        if not positions:
            return []
        return await run_in_threadpool(locate, self.geocoder, positions)

    def _log(self, since: float) -> float:
        if time.monotonic() - since < LOG_EVERY_S:
            return since
        p = self.progress
        log.info("places backfill: %s %d of %d", p.phase, p.done, p.total)
        return time.monotonic()

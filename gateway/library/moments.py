"""Moments that know time and place, over the library's rows: trips, events and on this day
(the algorithms are gateway/trips.py), with their visual sub-moments from the vector service.

The captures (every image with a capture time, its position and place) are read once per state of
the library: a cheap signature of the table (its row count, id sum, placed count, newest add) is
checked on each request and trips and events are recomputed only when it changed, in a worker
thread, one computation at a time; a request waits a moment for it, then answers the previous
state marked ``stale`` (seconds of work at 100,000 images, while an import changes the library
with every add). On this day reads ranges of the capture-time index, always current.

A trip's **visual sub-moments** are today's moments (``/moments``: the vector service's clusters at
a granularity, split where capture times leave a gap) restricted to the trip's members, in the
order they happened; members the service has not analysed form one more. Without a vector service
the trip's parts (its events, split by time and place) stand in. Photos without a time or a
position are in no trip and no event: they keep their visual moments in ``/moments``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.explore import Explorer, MomentsBody
from gateway.library.store import LibraryStore
from gateway.places import Geocoder
from gateway.sources import SourceUnavailable
from gateway.trips import (
    Capture,
    Event,
    Home,
    MomentRules,
    Trip,
    choose_cover,
    find_events,
    find_trips,
    infer_home,
)

log = logging.getLogger("ambience.gateway")

#: Seconds a request waits for trips and events to be recomputed before it answers the previous
#: ones, marked stale.
REFRESH_WAIT_S = 2.0


def event_id(members: list[int], start: date) -> str:
    """A name for an event or trip that stays while the library grows elsewhere: its first day and
    first photo."""
    return f"{start:%Y%m%d}-{members[0]}"


def event_json(event: Event, captures: dict[int, Capture]) -> dict[str, Any]:
    return {
        "event": event_id(event.members, event.start.date()),
        "title": event.title,
        "place": event.place,
        "start": event.start.isoformat(),
        "end": event.end.isoformat(),
        "size": len(event.members),
        "cover": choose_cover(event, captures),
        "members": event.members,
        "latitude": event.latitude,
        "longitude": event.longitude,
    }


def trip_json(trip: Trip, captures: dict[int, Capture]) -> dict[str, Any]:
    return {
        "trip": event_id(trip.members, trip.start),
        "title": trip.title,
        "place": trip.place,
        "start": trip.start.isoformat(),
        "end": trip.end.isoformat(),
        "size": len(trip.members),
        "cover": trip.cover,
        "members": trip.members,
        "countries": trip.countries,
        "distance_km": trip.distance_km,
        "parts": [
            {k: v for k, v in event_json(part, captures).items() if k != "event"} for part in trip.parts
        ],
    }


def home_json(home: Home | None) -> dict[str, Any] | None:
    return (
        None if home is None else {"latitude": home.latitude, "longitude": home.longitude, "days": home.days}
    )


def restrict(moments: list[list[int]], members: list[int], order: dict[int, int]) -> list[list[int]]:
    """``moments`` (each in its own order, the representative first) restricted to ``members``:
    the non-empty parts in the order they happened (by their earliest member in ``order``), then
    the members no moment holds, as one more."""
    wanted = set(members)
    out = []
    covered: set[int] = set()
    for moment in moments:
        part = [m for m in moment if m in wanted and m not in covered]
        if part:
            covered.update(part)
            out.append(part)
    out.sort(key=lambda p: min(order[m] for m in p))
    rest = [m for m in members if m not in covered]
    return [*out, rest] if rest else out


@dataclass
class LibraryState:
    """What the moments of one state of the library are made of, and the trips and events as the
    routes answer them (made once per state)."""

    signature: tuple[Any, ...]
    captures: dict[int, Capture]
    home: Home | None
    trips: list[Trip]
    events: list[Event]
    trips_by_id: dict[str, Trip] = field(default_factory=dict)
    trips_json: list[dict[str, Any]] = field(default_factory=list)
    events_json: list[dict[str, Any]] = field(default_factory=list)


class LibraryMoments:
    """Trips, events and on this day of the library. Trips and events are recomputed when the
    library changed: a request waits up to :data:`REFRESH_WAIT_S` for that, then answers the
    previous ones marked ``stale`` (at 100,000 images a computation takes seconds, and during an
    import the library changes with every add); the first computation is always waited for.
    On this day reads the capture-time index directly, always current."""

    def __init__(
        self,
        store: LibraryStore,
        geocoder: Geocoder,
        rules: MomentRules,
        home: Home | None,
        explorer: Explorer,
    ) -> None:
        self.store = store
        self.geocoder = geocoder
        self.rules = rules
        self.home = home
        self.explorer = explorer
        self._state: LibraryState | None = None
        self._refresh: asyncio.Task[None] | None = None

    async def state(self) -> tuple[LibraryState, bool]:
        """The newest state and whether it is stale (the library changed since)."""
        signature = await run_in_threadpool(self.store.signature)
        current = self._state
        if current is not None and current.signature == signature:
            return current, False
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._recompute(signature), name="library-moments")
        task = self._refresh
        if current is None:
            await asyncio.shield(task)
        else:
            await asyncio.wait({task}, timeout=REFRESH_WAIT_S)
            if task.done() and task.exception() is not None:
                log.warning("library moments: recomputing failed: %s", task.exception())
        state = self._state
        assert state is not None
        return state, state.signature != signature

    async def _recompute(self, signature: tuple[Any, ...]) -> None:
        self._state = await run_in_threadpool(self._compute, signature)

    def _compute(self, signature: tuple[Any, ...]) -> LibraryState:
        captures = self.store.captures()
        home = self.home or infer_home(captures, self.rules)
        trips = find_trips(captures, self.rules, self.home, locator=self.geocoder)
        events = find_events(captures, self.rules, home)
        by_id = {c.image_id: c for c in captures}
        return LibraryState(
            signature,
            by_id,
            home,
            trips,
            events,
            trips_by_id={event_id(t.members, t.start): t for t in trips},
            trips_json=[trip_json(t, by_id) for t in reversed(trips)],
            events_json=[event_json(e, by_id) for e in reversed(events)],
        )

    async def trips(self) -> dict[str, Any]:
        """Every trip, newest first, with its parts."""
        s, stale = await self.state()
        return {"stale": stale, "home": home_json(s.home), "trips": s.trips_json}

    async def trip(self, trip_id: str, granularity: float, source: str | None) -> dict[str, Any] | None:
        """One trip with its visual sub-moments (``moments_from``: the vector service, or "time"
        for the trip's parts when none can answer); None for an unknown id. Raises
        :class:`gateway.sources.Running` while the service computes its moments."""
        s, stale = await self.state()
        trip = s.trips_by_id.get(trip_id)
        if trip is None:
            return None
        order = {m: n for n, m in enumerate(trip.members)}
        try:
            reply = await self.explorer.moments(MomentsBody(granularity=granularity, source=source))
        except SourceUnavailable:
            parts, origin = [p.members for p in trip.parts], "time"
        else:
            parts = restrict([m["members"] for m in reply["moments"]], trip.members, order)
            origin = reply["source"]
        return {
            **trip_json(trip, s.captures),
            "stale": stale,
            "moments_from": origin,
            "moments": [{"representative": p[0], "size": len(p), "members": p} for p in parts],
        }

    async def events(self, limit: int) -> dict[str, Any]:
        """The newest ``limit`` events and how many there are."""
        s, stale = await self.state()
        return {
            "stale": stale,
            "home": home_json(s.home),
            "total": len(s.events),
            "events": s.events_json[:limit],
        }

    async def on_this_day(self, day: date, window_days: int) -> dict[str, Any]:
        years = await run_in_threadpool(self.store.on_this_day, day, window_days)
        return {
            "date": day.isoformat(),
            "window_days": window_days,
            "years": [
                {
                    "year": y.year,
                    "years_ago": y.years_ago,
                    "anchor": y.anchor.isoformat(),
                    "size": len(y.members),
                    "cover": y.members[len(y.members) // 2],
                    "members": y.members,
                }
                for y in years
            ],
        }

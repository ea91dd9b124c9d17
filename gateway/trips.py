"""Moments that know time and place: events, the library's home, trips, and "on this day".

Plain functions over :class:`Capture` records (an image id, its EXIF capture time and GPS position,
and the :class:`~gateway.places.Place` the catalog resolved for it); no HTTP, no database. Times
are the camera's wall clock (EXIF keeps no reliable time zone), so a day is the local calendar
day where the photo was taken; an aware datetime is read as its own wall-clock time.

- **Events** (:func:`find_events`): photos in time order, a new event after a gap in time or a
  jump in place. Away from home a night is not a break (a journey's days run together), so the
  gap there is ``event_gap_hours`` (24 h, as Nextcloud Journeys; LibrePhotos uses 36 h for every
  photo); near home, consecutive days are different occasions, so ``home_event_gap_hours`` (6 h,
  the gateway's visual moment gap). Two positioned photos more than ``event_jump_km`` (50 km,
  Journeys) apart start a new event: a train from Porto to Lisbon splits the day in two. One
  photo far from both its positioned neighbours, while they are near each other, is a GPS
  glitch: it stays in the event and never splits it. Photos without a position split on time
  only; photos without a time are in no event.
- **Home** (:func:`infer_home`): where photos are taken on the most days. Every day contributes
  one point per small area it visited (so a day with 500 photos counts once), and the home is the
  point with the most such day-points within ``home_radius_km`` (25 km, a metropolitan area),
  centred on the mean of those. :func:`find_trips` infers a home per calendar year when that year
  has at least ``home_min_days`` (30) days there (a move to another city), else uses the
  library's home: a year photographed mostly on holiday keeps the real home.
- **Trips** (:func:`find_trips`): a day is away when one of its positioned photos is more than
  ``away_km`` (50 km) from home; a trip is a run of away days, at most ``trip_max_gap_days`` (2)
  days without photos between two of them, and no day in between with only home photos. Its
  members are the away photos of those days (the airport at home on the first day is not part of
  it); runs under ``trip_min_photos`` (3) photos are dropped (a stray fix). Photos without a time
  or a position are in no trip (they keep their visual moments).
  The title names the cities that hold at least ``title_min_share`` (10%) of the trip's photos, in
  the order visited, when there are at most ``title_max_places`` (2) of them ("Porto and Lisbon";
  a suburb within ``title_merge_km``, 20 km, of a city with more photos counts as that city),
  else the countries ("Portugal and Spain"; past three, "5 countries"), then the dates
  ("Lisbon, 12–16 May 2024"). The cover is from the largest part (the trip's events): the member
  with the best ``score`` when the caller gives one, else the photo nearest that part's middle.
- **On this day** (:func:`on_this_day`): photos taken within ``window_days`` (3, as Immich) of
  the same calendar day in each earlier year, grouped by that year. Windows run across year ends
  (30 December - 2 January), and 29 February is the 28th in other years.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

import numpy as np

from gateway.places import EARTH_RADIUS_KM, Place, great_circle_km, unit_vectors, valid_position

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True, slots=True)
class Capture:
    """What the catalog knows of when and where one image was taken. ``taken_at``: the EXIF capture
    time (camera-local); ``latitude``/``longitude``: EXIF GPS in degrees; ``place``: its resolved
    place, when known (titles use it)."""

    image_id: int
    taken_at: datetime | None
    latitude: float | None = None
    longitude: float | None = None
    place: Place | None = None

    @property
    def position(self) -> tuple[float, float] | None:
        """The GPS position, None when missing, invalid, or exactly (0, 0): the "no fix" some
        cameras write, never a photo taken in the Gulf of Guinea."""
        lat, lon = self.latitude, self.longitude
        if lat is None or lon is None or not valid_position(lat, lon):
            return None
        lat, lon = float(lat), float(lon)
        return None if lat == 0.0 and lon == 0.0 else (lat, lon)

    @property
    def local_time(self) -> datetime | None:
        """The capture time as the camera's wall clock (an aware time loses its zone)."""
        when = self.taken_at
        return when if when is None or when.tzinfo is None else when.replace(tzinfo=None)


@dataclass(frozen=True)
class MomentRules:
    """Every threshold of events, homes and trips; the defaults and why are in the module docstring
    and docs/library.md. The gateway exposes each as a setting."""

    event_gap_hours: float = 24.0
    home_event_gap_hours: float = 6.0
    event_jump_km: float = 50.0
    home_radius_km: float = 25.0
    home_min_days: int = 30
    away_km: float = 50.0
    trip_max_gap_days: int = 2
    trip_min_photos: int = 3
    title_max_places: int = 2
    title_min_share: float = 0.1
    title_merge_km: float = 20.0

    def __post_init__(self) -> None:
        positive = (
            "event_gap_hours",
            "home_event_gap_hours",
            "event_jump_km",
            "home_radius_km",
            "away_km",
            "title_merge_km",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.home_min_days < 1 or self.trip_min_photos < 1 or self.title_max_places < 1:
            raise ValueError("home_min_days, trip_min_photos and title_max_places must be >= 1")
        if self.trip_max_gap_days < 0 or not 0 <= self.title_min_share <= 1:
            raise ValueError("trip_max_gap_days must be >= 0 and title_min_share within [0, 1]")


@dataclass(frozen=True, slots=True)
class Home:
    """The centre of the area where the most days' photos were taken, and on how many days."""

    latitude: float
    longitude: float
    days: int


@dataclass
class Event:
    """Photos close in time and place. ``members``: image ids in time order; ``latitude`` and
    ``longitude``: the middle of its positioned photos (None when none has a position);
    ``place``: the name most of its photos share ("" when unknown)."""

    members: list[int]
    start: datetime
    end: datetime
    latitude: float | None
    longitude: float | None
    place: str = ""

    @property
    def title(self) -> str:
        dates = date_range_text(self.start.date(), self.end.date())
        return f"{self.place}, {dates}" if self.place else dates


@dataclass
class Trip:
    """Consecutive days of photos away from home. ``members`` in time order; ``parts``: its events
    (the caller may split them further by picture); ``place``: the title's place part;
    ``countries``: ISO codes in the order visited; ``distance_km``: how far from home its farthest
    photo is."""

    title: str
    place: str
    start: date
    end: date
    members: list[int]
    cover: int
    parts: list[Event]
    countries: list[str]
    distance_km: float
    home: Home


@dataclass
class YearMemory:
    """The photos of one earlier year's window around the asked day (``anchor``), in time order."""

    year: int
    years_ago: int
    anchor: date
    members: list[int] = field(default_factory=list)


class Locator(Protocol):
    def locate_many(self, positions: Sequence[tuple[float | None, float | None]]) -> list[Place | None]: ...


# ---- text ---------------------------------------------------------------------------------------


def date_range_text(start: date, end: date) -> str:
    """ "12 May 2024", "12–16 May 2024", "28 May – 3 June 2024", "30 December 2024 – 2 January 2025"."""
    if end < start:
        start, end = end, start
    if start == end:
        return f"{start.day} {MONTHS[start.month - 1]} {start.year}"
    if (start.year, start.month) == (end.year, end.month):
        return f"{start.day}–{end.day} {MONTHS[end.month - 1]} {end.year}"
    if start.year == end.year:
        return f"{start.day} {MONTHS[start.month - 1]} – {end.day} {MONTHS[end.month - 1]} {end.year}"
    return (
        f"{start.day} {MONTHS[start.month - 1]} {start.year} – {end.day} {MONTHS[end.month - 1]} {end.year}"
    )


def join_names(names: Sequence[str]) -> str:
    """ "A", "A and B", "A, B and C"."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def place_text(
    places: Sequence[Place | None],
    rules: MomentRules = MomentRules(),
    positions: Sequence[tuple[float, float] | None] | None = None,
) -> str:
    """The place part of a title for photos in time order: their cities ("Porto and Lisbon"),
    else their countries, else "At sea" when every known place is; "" when nothing is known.
    With the photos' ``positions``, a city whose photos lie within ``title_merge_km`` of a city
    with more of them counts as that one (GeoNames names suburbs and quarters on their own:
    Suita and Toyonaka are Osaka in a title)."""
    known = [p for p in places if p is not None]
    if not known:
        return ""
    alias = _merged_cities(places, positions, rules.title_merge_km) if positions is not None else {}

    def named(values: list[str]) -> list[str]:
        counts = Counter(values)
        least = max(1.0, rules.title_min_share * len(known))
        kept = [v for v in dict.fromkeys(values) if counts[v] >= least]  # order of first visit
        return kept or [counts.most_common(1)[0][0]]

    cities = [alias.get(p.city, p.city) for p in known if p.city]
    countries = [p.country for p in known if p.country]
    if cities:
        chosen = named(cities)
        if len(chosen) <= rules.title_max_places:
            return join_names(chosen)
    if countries:
        chosen = named(countries)
        return (
            join_names(chosen)
            if len(chosen) <= max(3, rules.title_max_places)
            else f"{len(chosen)} countries"
        )
    if all(p.at_sea for p in known):
        return "At sea"
    return ""


def _merged_cities(
    places: Sequence[Place | None], positions: Sequence[tuple[float, float] | None], within_km: float
) -> dict[str, str]:
    """City name -> the name it counts as: the city with more photos whose photos' middle lies
    within ``within_km`` of its own."""
    spots: dict[str, list[tuple[float, float]]] = {}
    counts: Counter[str] = Counter()
    for place, position in zip(places, positions, strict=True):
        if place is not None and place.city:
            counts[place.city] += 1
            if position is not None:
                spots.setdefault(place.city, []).append(position)
    middles = {
        name: _mean_position(np.array([p[0] for p in ps]), np.array([p[1] for p in ps]))
        for name, ps in spots.items()
    }
    kept: list[str] = []
    alias: dict[str, str] = {}
    for name, _ in counts.most_common():
        here = middles.get(name)
        into = next(
            (
                k
                for k in kept
                if here is not None and k in middles and _km_between(here, middles[k]) <= within_km
            ),
            None,
        )
        if into is None:
            kept.append(name)
        else:
            alias[name] = into
    return alias


# ---- geometry -----------------------------------------------------------------------------------


def _km_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(b[1] - a[1]) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, max(0.0, h))))


def _haversine(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _mean_position(latitudes: np.ndarray, longitudes: np.ndarray) -> tuple[float, float]:
    """The mean on the sphere (right across the antimeridian, unlike a mean of longitudes)."""
    v = unit_vectors(latitudes, longitudes).mean(axis=0)
    norm = float(np.linalg.norm(v))
    if norm < 1e-12:
        return float(np.median(latitudes)), float(np.median(longitudes))
    x, y, z = v / norm
    return math.degrees(math.asin(max(-1.0, min(1.0, z)))), math.degrees(math.atan2(y, x))


# ---- home ---------------------------------------------------------------------------------------


def _timed_positioned(captures: Iterable[Capture]) -> list[tuple[datetime, float, float, Capture]]:
    out = []
    for c in captures:
        when, where = c.local_time, c.position
        if when is not None and where is not None:
            out.append((when, where[0], where[1], c))
    out.sort(key=lambda row: (row[0], row[3].image_id))
    return out


def _home_of(
    days: np.ndarray, latitudes: np.ndarray, longitudes: np.ndarray, radius_km: float
) -> Home | None:
    """The densest area by days: cells of ``radius_km``, each scored by the days with photos in it
    and its eight neighbours; the home is the middle of the best block's days (each day weighs
    one), refined once over the days within ``radius_km`` of it. O(n log n)."""
    if len(days) == 0:
        return None
    cell = radius_km / 111.2  # degrees of latitude
    lat_cell = np.floor(latitudes / cell).astype(np.int64)
    band = np.clip(np.cos(np.radians((lat_cell + 0.5) * cell)), 0.01, 1.0)
    lon_cell = np.floor((longitudes + 180.0) * band / cell).astype(np.int64)
    cells = (lat_cell + (1 << 19)) << 21 | lon_cell
    day_cells = np.unique(days.astype(np.int64) << 42 | cells)
    occupied, counts = np.unique(day_cells & ((1 << 42) - 1), return_counts=True)
    per_cell = dict(zip(occupied.tolist(), counts.tolist(), strict=True))
    offsets = [dy * (1 << 21) + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    best = max(per_cell, key=lambda c: (sum(per_cell.get(c + o, 0) for o in offsets), per_cell[c]))
    vectors = unit_vectors(latitudes, longitudes)
    mask = np.isin(cells, [best + o for o in offsets])
    for _ in range(2):
        # each day's photos weigh as much as any other day's
        day_index, inverse = np.unique(days[mask], return_inverse=True)
        per_day = np.zeros((len(day_index), 3))
        np.add.at(per_day, inverse.ravel(), vectors[mask])
        per_day /= np.linalg.norm(per_day, axis=1, keepdims=True)
        centre = per_day.sum(axis=0)
        x, y, z = centre / np.linalg.norm(centre)
        lat, lon = math.degrees(math.asin(max(-1.0, min(1.0, z)))), math.degrees(math.atan2(y, x))
        within = great_circle_km(lat, lon, latitudes, longitudes) <= radius_km
        if not within.any():  # the block's days lie in its corners: keep the block
            break
        mask = within
    return Home(round(lat, 6), round(lon, 6), len(np.unique(days[mask])))


def infer_home(captures: Iterable[Capture], rules: MomentRules = MomentRules()) -> Home | None:
    """Where photos were taken on the most days (None without any timed, positioned photo)."""
    rows = _timed_positioned(captures)
    if not rows:
        return None
    return _home_of(
        np.array([r[0].toordinal() for r in rows]),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows]),
        rules.home_radius_km,
    )


def homes_by_year(captures: Iterable[Capture], rules: MomentRules = MomentRules()) -> dict[int, Home]:
    """The home of each calendar year with timed, positioned photos: that year's own when it
    has at least ``home_min_days`` days there, else the library's."""
    rows = _timed_positioned(captures)
    if not rows:
        return {}
    days = np.array([r[0].toordinal() for r in rows])
    years = np.array([r[0].year for r in rows])
    lat, lon = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    library = _home_of(days, lat, lon, rules.home_radius_km)
    assert library is not None
    out: dict[int, Home] = {}
    for year in np.unique(years):
        mask = years == year
        own = _home_of(days[mask], lat[mask], lon[mask], rules.home_radius_km)
        out[int(year)] = own if own is not None and own.days >= rules.home_min_days else library
    return out


# ---- events -------------------------------------------------------------------------------------


def _short_name(place: Place | None) -> str:
    if place is None:
        return ""
    if place.at_sea:
        return "At sea"
    return place.city or place.region or place.country or ""


def _wall_seconds(when: datetime) -> float:
    """Seconds of wall-clock time (no time zone, no daylight saving jumps)."""
    return (when - _EPOCH).total_seconds()


_EPOCH = datetime(1970, 1, 1)


def find_events(
    captures: Iterable[Capture], rules: MomentRules = MomentRules(), home: Home | None = None
) -> list[Event]:
    """Timed photos split into events (module docstring), oldest first. ``home``: near it the
    shorter ``home_event_gap_hours`` applies; without one every gap is ``event_gap_hours``."""
    timed = sorted(
        (c for c in captures if c.local_time is not None), key=lambda c: (c.local_time, c.image_id)
    )
    if not timed:
        return []
    n = len(timed)
    seconds = np.array([_wall_seconds(c.local_time) for c in timed])  # type: ignore[arg-type]
    lat, lon = np.full(n, np.nan), np.full(n, np.nan)
    for i, c in enumerate(timed):
        position = c.position
        if position is not None:
            lat[i], lon[i] = position
    positioned = np.nonzero(~np.isnan(lat))[0]

    # near home: by a photo's own position, else the last positioned photo's (the first one's
    # for those before it)
    near = np.zeros(n, dtype=bool)
    if home is not None and len(positioned):
        own = (
            great_circle_km(home.latitude, home.longitude, lat[positioned], lon[positioned]) <= rules.away_km
        )
        last = np.maximum.accumulate(np.where(~np.isnan(lat), np.arange(n), -1))
        last[last < 0] = positioned[0]
        rank = np.searchsorted(positioned, last)
        near = own[rank]
    limit = np.where(near[:-1] & near[1:], rules.home_event_gap_hours, rules.event_gap_hours) * 3600.0
    gap_split = np.concatenate([[False], np.diff(seconds) > limit])

    # jumps between consecutive trusted positions (a lone GPS glitch is not trusted)
    jump = rules.event_jump_km
    trusted = positioned
    if len(positioned) >= 3:
        plat, plon = lat[positioned], lon[positioned]
        step = _haversine(plat[:-1], plon[:-1], plat[1:], plon[1:])
        skip = _haversine(plat[:-2], plon[:-2], plat[2:], plon[2:])
        glitch = np.zeros(len(positioned), dtype=bool)
        glitch[1:-1] = (step[:-1] > jump) & (step[1:] > jump) & (skip <= jump)
        trusted = positioned[~glitch]
    jumped = np.zeros(n, dtype=bool)
    previous_trusted = np.full(n, -1, dtype=np.int64)
    if len(trusted) >= 2:
        tlat, tlon = lat[trusted], lon[trusted]
        jumped[trusted[1:]] = _haversine(tlat[:-1], tlon[:-1], tlat[1:], tlon[1:]) > jump
        previous_trusted[trusted[1:]] = trusted[:-1]

    starts = [0]
    for i in np.nonzero(gap_split | jumped)[0].tolist():
        # a jump counts only from a position of the same event (a time split may lie between)
        if i > 0 and (gap_split[i] or previous_trusted[i] >= starts[-1]):
            starts.append(i)
    bounds = [*starts, n]

    # each event's middle: the normalised sum of its positions on the sphere
    event_of = np.searchsorted(np.array(starts), np.arange(n), side="right") - 1
    sums = np.zeros((len(starts), 3))
    if len(positioned):
        np.add.at(sums, event_of[positioned], unit_vectors(lat[positioned], lon[positioned]))
    norms = np.linalg.norm(sums, axis=1)
    events = []
    for e, (a, b) in enumerate(itertools.pairwise(bounds)):
        members = timed[a:b]
        middle_lat = middle_lon = None
        if norms[e] > 1e-12:
            x, y, z = sums[e] / norms[e]
            middle_lat, middle_lon = (
                math.degrees(math.asin(max(-1.0, min(1.0, z)))),
                math.degrees(math.atan2(y, x)),
            )
        names = [name for name in (_short_name(c.place) for c in members) if name]
        events.append(
            Event(
                members=[c.image_id for c in members],
                start=members[0].local_time,  # type: ignore[arg-type]
                end=members[-1].local_time,  # type: ignore[arg-type]
                latitude=middle_lat,
                longitude=middle_lon,
                place=Counter(names).most_common(1)[0][0] if names else "",
            )
        )
    return events


# ---- trips --------------------------------------------------------------------------------------


def find_trips(
    captures: Iterable[Capture],
    rules: MomentRules = MomentRules(),
    home: Home | None = None,
    locator: Locator | None = None,
    score: Callable[[int], float | None] | None = None,
) -> list[Trip]:
    """Trips away from home, oldest first (module docstring). ``home``: the caller's (a user
    setting); by default inferred per year (:func:`homes_by_year`). ``locator``: resolves the
    places of members without one (a :class:`~gateway.places.Geocoder`), for titles. ``score``:
    per image id, higher is a better cover (None: no opinion)."""
    rows = _timed_positioned(captures)
    if not rows:
        return []
    homes = (
        {year: home for year in {r[0].year for r in rows}}
        if home is not None
        else homes_by_year([r[3] for r in rows], rules)
    )
    lat = np.array([r[1] for r in rows])
    lon = np.array([r[2] for r in rows])
    years = np.array([r[0].year for r in rows])
    from_home = np.empty(len(rows))
    for year, year_home in homes.items():
        mask = years == year
        from_home[mask] = great_circle_km(year_home.latitude, year_home.longitude, lat[mask], lon[mask])
    away = from_home > rules.away_km

    # day by day: away when any photo of the day is away
    days: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        days.setdefault(r[0].toordinal(), []).append(i)
    runs: list[list[int]] = []  # row indexes of each trip's away photos
    current: list[int] = []
    last_away_day: int | None = None
    for day in sorted(days):
        away_rows = [i for i in days[day] if away[i]]
        if not away_rows:  # a day with only home photos ends a trip
            if current:
                runs.append(current)
            current, last_away_day = [], None
            continue
        if last_away_day is not None and day - last_away_day > rules.trip_max_gap_days + 1:
            runs.append(current)
            current = []
        current.extend(away_rows)
        last_away_day = day
    if current:
        runs.append(current)

    trips = []
    for run in runs:
        if len(run) < rules.trip_min_photos:
            continue
        members = [rows[i][3] for i in run]
        if locator is not None:
            members = _with_places(members, locator)
        trips.append(_trip(members, float(from_home[run].max()), homes[rows[run[0]][0].year], rules, score))
    return trips


def _with_places(members: list[Capture], locator: Locator) -> list[Capture]:
    missing = [i for i, c in enumerate(members) if c.place is None]
    if not missing:
        return members
    found = locator.locate_many([(members[i].latitude, members[i].longitude) for i in missing])
    out = list(members)
    for i, place in zip(missing, found, strict=True):
        c = members[i]
        out[i] = Capture(c.image_id, c.taken_at, c.latitude, c.longitude, place)
    return out


def _trip(
    members: list[Capture],
    distance_km: float,
    home: Home,
    rules: MomentRules,
    score: Callable[[int], float | None] | None,
) -> Trip:
    parts = find_events(members, rules, home=None)  # away from home: the away gap throughout
    where = place_text([c.place for c in members], rules, [c.position for c in members])
    start, end = members[0].local_time.date(), members[-1].local_time.date()  # type: ignore[union-attr]
    dates = date_range_text(start, end)
    countries = list(dict.fromkeys(c.place.country_code for c in members if c.place and c.place.country_code))
    by_id = {c.image_id: c for c in members}
    return Trip(
        title=f"{where}, {dates}" if where else dates,
        place=where,
        start=start,
        end=end,
        members=[c.image_id for c in members],
        cover=choose_cover(max(parts, key=lambda e: len(e.members)), by_id, score),
        parts=parts,
        countries=countries,
        distance_km=round(distance_km, 1),
        home=home,
    )


def choose_cover(
    part: Event, captures: dict[int, Capture], score: Callable[[int], float | None] | None = None
) -> int:
    """The best-scored member of ``part`` when ``score`` has an opinion on one, else the member
    nearest the middle of its positions (the earliest of equals)."""
    if score is not None:
        scored = [(s, -k, m) for k, m in enumerate(part.members) if (s := score(m)) is not None]
        if scored:
            return max(scored)[2]
    if part.latitude is None or part.longitude is None:
        return part.members[len(part.members) // 2]
    best, best_km = part.members[0], math.inf
    for m in part.members:
        position = captures[m].position
        if position is None:
            continue
        km = _km_between((part.latitude, part.longitude), position)
        if km < best_km:
            best, best_km = m, km
    return best


# ---- on this day --------------------------------------------------------------------------------


def same_day_in(day: date, year: int) -> date:
    """``day`` in another year; 29 February is the 28th in a common year."""
    if day.month == 2 and day.day == 29:
        try:
            return day.replace(year=year)
        except ValueError:
            return date(year, 2, 28)
    return day.replace(year=year)


class OnThisDayIndex:
    """The capture times of a library sorted once: each :meth:`query` is two binary searches per
    earlier year. Photos without a time are left out."""

    def __init__(self, captures: Iterable[Capture]) -> None:
        timed = sorted((c.local_time, c.image_id) for c in captures if c.local_time is not None)
        self.ordinals = np.fromiter((t.toordinal() for t, _ in timed), dtype=np.int64, count=len(timed))
        self.image_ids = [image_id for _, image_id in timed]
        self.first_year = timed[0][0].year if timed else None

    def query(self, day: date, window_days: int = 3) -> list[YearMemory]:
        """Photos within ``window_days`` of ``day``'s date in each earlier year, newest year first;
        years without photos are left out."""
        if not 0 <= window_days <= 182:
            raise ValueError("window_days must be within [0, 182]")
        if self.first_year is None:
            return []
        out = []
        # a window can reach back into the year before the first photo's (1 January's does)
        for year in range(day.year - 1, max(0, self.first_year - 2), -1):
            anchor = same_day_in(day, year)
            lo = int(np.searchsorted(self.ordinals, anchor.toordinal() - window_days, side="left"))
            hi = int(np.searchsorted(self.ordinals, anchor.toordinal() + window_days, side="right"))
            if hi > lo:
                out.append(YearMemory(year, day.year - year, anchor, self.image_ids[lo:hi]))
        return out


def on_this_day(day: date, captures: Iterable[Capture], window_days: int = 3) -> list[YearMemory]:
    """Photos taken within ``window_days`` of ``day``'s date in each earlier year, newest year
    first (module docstring); a year without photos is left out, photos without a time are
    ignored. For many dates over one library, build an :class:`OnThisDayIndex` once."""
    if not 0 <= window_days <= 182:
        raise ValueError("window_days must be within [0, 182]")
    return OnThisDayIndex(captures).query(day, window_days)

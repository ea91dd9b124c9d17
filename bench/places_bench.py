"""Places, trips and on this day: reverse geocoding per image, trip detection and memories at scale.

- **Reverse geocoding** (gateway/places.py) of positions near GeoNames places (each a random
  place, moved up to ~5 km) and 10% uniformly random positions (mostly at sea): the index load
  (first lookup) and its peak memory, one position at a time (p50/p95) and 100,000 (``--small``:
  10,000) in one batch. Reference in the same run: the ``reverse-geocode`` package's own lookup
  (nearest place by a k-d tree over raw latitude/longitude, no choice of the prominent place, no
  land test), and how often both name the same country.
- **Trips and events** (gateway/trips.py) over a synthetic library of 100,000 (``--small``: 10,000)
  timestamped photos over ten years: a home area (Lisbon, photos on half the days), six planted
  trips a year of 1-14 days to cities of 200,000 people or more at least 150 km away (a third of
  them to two cities), 5% of photos without a position and 2% without a time. Measured: the home
  found, planted trips found with their exact first and last day, trips found that were not
  planted, and the time of home inference, events, trips (titles from the photos' places, found
  in one batch).
- **On this day** at the same library: one call per date, 20 dates (leap day and year ends
  included), and the same dates from an index built once (what a gateway keeps between requests).

Reference for the moment timings: LibrePhotos' rule (a new event after 36 hours), sort and one
pass over the same photos in plain Python.

    python -m bench.places_bench [--small] [--size N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import date, datetime, timedelta

import numpy as np

from bench.timing import machine
from gateway.places import Geocoder, great_circle_km
from gateway.trips import (
    Capture,
    OnThisDayIndex,
    find_events,
    find_trips,
    homes_by_year,
    infer_home,
    on_this_day,
)

HOME = (38.7223, -9.1393)  # Lisbon
YEARS = range(2015, 2025)
TRIPS_PER_YEAR = 6


def progress(message: str) -> None:
    print(f"[places_bench] {message}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles_us(samples: list[float]) -> str:
    p50, p95 = np.percentile(np.array(samples) * 1e6, [50, 95])
    return f"{p50:.0f} / {p95:.0f}"


# ---- reverse geocoding --------------------------------------------------------------------------


def positions_near_places(geocoder: Geocoder, n: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    index = geocoder._loaded()
    picks = rng.integers(0, len(index.name), n)
    lat = np.clip(index.latitude[picks] + rng.normal(0, 0.03, n), -89.9, 89.9)
    lon = (index.longitude[picks] + rng.normal(0, 0.03, n) + 180) % 360 - 180
    anywhere = rng.random(n) < 0.1
    lat[anywhere] = np.degrees(np.arcsin(rng.uniform(-1, 1, anywhere.sum())))
    lon[anywhere] = rng.uniform(-180, 180, anywhere.sum())
    return list(zip(lat.tolist(), lon.tolist(), strict=True))


def geocoding(size: int, small: bool) -> tuple[list[str], Geocoder]:
    import reverse_geocode

    rng = np.random.default_rng(7)
    before = rss_mb()
    geocoder = Geocoder()
    started = time.perf_counter()
    geocoder.locate(*HOME)
    load_s = time.perf_counter() - started
    load_mb = rss_mb() - before
    started = time.perf_counter()
    reverse_geocode.get(HOME)
    reference_load_s = time.perf_counter() - started
    progress(f"geocoder loaded in {load_s:.1f} s")

    singles = positions_near_places(geocoder, 500 if small else 2000, rng)
    ours, theirs = [], []
    for lat, lon in singles:
        started = time.perf_counter()
        geocoder.locate(lat, lon)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        reverse_geocode.get((lat, lon))
        theirs.append(time.perf_counter() - started)

    batch = positions_near_places(geocoder, size, rng)
    started = time.perf_counter()
    places = geocoder.locate_many(batch)
    batch_s = time.perf_counter() - started
    started = time.perf_counter()
    reference = reverse_geocode.search(batch)
    reference_batch_s = time.perf_counter() - started
    progress(f"{size:,} positions in one batch: {batch_s:.1f} s")

    named = [p for p in places if p is not None]
    at_sea = sum(p.at_sea for p in named)
    with_city = sum(p.city is not None for p in named)
    both = [
        (p.country_code, r["country_code"])
        for p, r in zip(places, reference, strict=True)
        if p and p.country_code
    ]
    same_country = sum(a == b for a, b in both) / max(1, len(both))
    rows = [
        f"Positions: {size:,} in the batch ({with_city:,} named after a city, {at_sea:,} at sea), "
        f"{len(singles):,} looked up one at a time.\n",
        "| step | gateway/places.py | reverse-geocode's own lookup | ratio |",
        "|---|---|---|---|",
        f"| load (first lookup) | {load_s:.2f} s, peak +{load_mb:.0f} MB | {reference_load_s:.2f} s | "
        f"{load_s / reference_load_s:.2f} |",
        f"| one position, p50 / p95 µs | {percentiles_us(ours)} | {percentiles_us(theirs)} | "
        f"{np.median(ours) / np.median(theirs):.2f} |",
        f"| batch of {size:,}, µs per position | {batch_s / size * 1e6:.1f} | "
        f"{reference_batch_s / size * 1e6:.1f} | {batch_s / reference_batch_s:.2f} |",
        "",
        f"Same country as the reference for {same_country:.1%} of the positions both name a country in "
        "(they differ near borders, where the nearest place on the sphere and on the latitude/longitude "
        "plane differ, and where ours says at sea or remote).",
    ]
    return rows, geocoder


# ---- a synthetic library ------------------------------------------------------------------------


def plant_library(
    size: int, geocoder: Geocoder, rng: np.random.Generator
) -> tuple[list[Capture], list[tuple[date, date]]]:
    """Captures and the planted trips' (first day, last day)."""
    index = geocoder._loaded()
    big = np.nonzero(index.population >= 200_000)[0]
    far = big[great_circle_km(HOME[0], HOME[1], index.latitude[big], index.longitude[big]) > 150]
    trips: list[tuple[date, date, list[int]]] = []
    for year in YEARS:
        # at least a week at home between two trips (a trip lasts at most 14 days)
        starts = sorted(rng.choice(np.arange(3, 340, 21), TRIPS_PER_YEAR, replace=False))
        for start in starts:
            first = date(year, 1, 1) + timedelta(days=int(start))
            length = int(rng.choice([1, 2, 3, 3, 4, 5, 7, 10, 14]))
            city = int(rng.choice(far))
            cities = [city]
            if rng.random() < 1 / 3 and length >= 3:  # a second city 80-400 km on
                d = great_circle_km(
                    index.latitude[city], index.longitude[city], index.latitude[big], index.longitude[big]
                )
                near = big[(d > 80) & (d < 400)]
                if len(near):
                    cities.append(int(rng.choice(near)))
            trips.append((first, first + timedelta(days=length - 1), cities))
    days = [
        date(YEARS[0], 1, 1) + timedelta(days=k)
        for k in range((date(YEARS[-1], 12, 31) - date(YEARS[0], 1, 1)).days + 1)
    ]
    on_trip: dict[date, tuple[int, int]] = {}
    for t, (first, last, cities) in enumerate(trips):
        span = (last - first).days + 1
        for k in range(span):
            on_trip[first + timedelta(days=k)] = (t, cities[min(len(cities) - 1, k * len(cities) // span)])
    after_trip = {last + timedelta(days=1) for _, last, _ in trips}
    trip_days = len(on_trip)
    home_days = len(days) - trip_days
    # rates so the library has about `size` photos: 40% of them on trips
    trip_rate = 0.4 * size / trip_days
    home_rate = 0.6 * size / (home_days * 0.5)
    captures: list[Capture] = []
    for day in days:
        trip = on_trip.get(day)
        if trip is None:
            if day not in after_trip and rng.random() >= 0.5:
                continue
            n, centre, spread = max(1, rng.poisson(home_rate)), HOME, 0.05
        else:
            city = trip[1]
            n, centre, spread = (
                max(1, rng.poisson(trip_rate)),
                (index.latitude[city], index.longitude[city]),
                0.03,
            )
        seconds = np.sort(rng.integers(8 * 3600, 23 * 3600, n))
        lat = centre[0] + rng.normal(0, spread, n)
        lon = centre[1] + rng.normal(0, spread, n)
        for s, la, lo in zip(seconds, lat, lon, strict=True):
            image_id = len(captures) + 1
            when = (
                None
                if rng.random() < 0.02
                else datetime(day.year, day.month, day.day) + timedelta(seconds=int(s))
            )
            if rng.random() < 0.05:
                captures.append(Capture(image_id, when))
            else:
                captures.append(Capture(image_id, when, float(la), float(lo)))
    return captures, [(first, last) for first, last, _ in trips]


def time_gap_events(captures: list[Capture], gap_hours: float) -> list[list[int]]:
    """The reference: LibrePhotos' rule, a new event after a gap in time only."""
    timed = sorted((c for c in captures if c.taken_at is not None), key=lambda c: c.taken_at)  # type: ignore[arg-type,return-value]
    events: list[list[int]] = []
    limit = timedelta(hours=gap_hours)
    for previous, capture in zip([None, *timed[:-1]], timed, strict=True):
        if previous is None or capture.taken_at - previous.taken_at > limit:  # type: ignore[operator]
            events.append([])
        events[-1].append(capture.image_id)
    return events


def trips_and_events(size: int, geocoder: Geocoder, small: bool) -> list[str]:
    rng = np.random.default_rng(11)
    captures, planted = plant_library(size, geocoder, rng)
    progress(f"library of {len(captures):,} photos, {len(planted)} planted trips")
    places = geocoder.locate_many([(c.latitude, c.longitude) for c in captures])
    captures = [
        Capture(c.image_id, c.taken_at, c.latitude, c.longitude, p)
        for c, p in zip(captures, places, strict=True)
    ]

    def timed(fn):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        result = fn()
        return result, time.perf_counter() - started

    _, sort_s = timed(lambda: time_gap_events(captures, 36.0))
    home, home_s = timed(lambda: infer_home(captures))
    _, years_s = timed(lambda: homes_by_year(captures))
    events, events_s = timed(lambda: find_events(captures, home=home))
    trips, trips_s = timed(lambda: find_trips(captures))
    progress(f"{len(trips)} trips, {len(events)} events")
    assert home is not None
    home_km = float(great_circle_km(HOME[0], HOME[1], home.latitude, home.longitude))
    found = {(t.start, t.end) for t in trips}
    exact = sum((first, last) in found for first, last in planted)
    overlapping = sum(any(t.start <= last and first <= t.end for t in trips) for first, last in planted)
    extra = sum(not any(t.start <= last and first <= t.end for first, last in planted) for t in trips)
    two_city = [t for t in trips[2:] if " and " in t.place]

    days = [date(2025, 2, 28), date(2024, 2, 29), date(2025, 1, 1), date(2024, 12, 31), date(2025, 1, 2)]
    days += [date(2025, 1, 1) + timedelta(days=int(k)) for k in rng.integers(0, 365, 15)]
    samples = []
    for day in days:
        started = time.perf_counter()
        memories = on_this_day(day, captures)
        samples.append(time.perf_counter() - started)
    memory_index, index_s = timed(lambda: OnThisDayIndex(captures))
    queries = []
    for day in days:
        started = time.perf_counter()
        memory_index.query(day)
        queries.append(time.perf_counter() - started)
    per_year = np.mean([len(m.members) for m in memories]) if memories else 0.0

    usable = sum(c.position is not None and c.taken_at is not None for c in captures)
    p50, p95 = np.percentile(samples, [50, 95])

    def ratio(seconds: float) -> str:
        return f"{seconds / sort_s:.3g}"

    return [
        f"Library: {len(captures):,} photos, {usable:,} with time and position; "
        f"{len(planted)} planted trips.\n",
        f"- home found {home_km:.1f} km from the planted one ({home.days:,} days there)",
        f"- planted trips found with their exact first and last day: {exact} of {len(planted)} "
        f"({overlapping} overlapped by a found trip); trips found that were not planted: {extra}",
        f"- titles, e.g.: {'; '.join(t.title for t in trips[:2])}"
        + (f"; two cities: {two_city[0].title}" if two_city else ""),
        f"- events: {len(events):,}",
        "",
        "| step | seconds | × the reference |",
        "|---|---|---|",
        f"| reference: split at 36 h gaps only (LibrePhotos' rule) | {sort_s:.3f} | 1.0 |",
        f"| infer_home | {home_s:.3f} | {ratio(home_s)} |",
        f"| homes_by_year | {years_s:.3f} | {ratio(years_s)} |",
        f"| find_events (home-aware) | {events_s:.3f} | {ratio(events_s)} |",
        f"| find_trips (homes per year, titles, covers) | {trips_s:.3f} | {ratio(trips_s)} |",
        f"| on_this_day, one date (p50 / p95 of {len(days)}) | {p50:.3f} / {p95:.3f} | {ratio(p50)} |",
        f"| OnThisDayIndex: build once | {index_s:.3f} | {ratio(index_s)} |",
        f"| OnThisDayIndex: one date (p50 of {len(days)}) | {float(np.median(queries)) * 1e6:.0f} µs | "
        f"{ratio(float(np.median(queries)))} |",
        "",
        f"On this day answered about {per_year:.0f} photos per earlier year for the last date asked "
        f"(window ±3 days).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="10,000 positions and photos (smoke test)")
    parser.add_argument("--size", type=int, default=0, help="positions and photos (default 100,000)")
    args = parser.parse_args()
    size = args.size or (10_000 if args.small else 100_000)
    print(f"Machine: {machine()}.\n")
    print("#### Reverse geocoding\n")
    rows, geocoder = geocoding(size, args.small)
    print("\n".join(rows))
    print("\n#### Trips, events and on this day\n")
    print("\n".join(trips_and_events(size, geocoder, args.small)))


if __name__ == "__main__":
    main()

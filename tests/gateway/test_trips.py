"""Events, home, trips and on-this-day (gateway/trips.py) over generated libraries; places from the
real offline geocoder."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

import pytest

from gateway.places import Geocoder, Place
from gateway.trips import (
    Capture,
    Home,
    MomentRules,
    OnThisDayIndex,
    date_range_text,
    find_events,
    find_trips,
    homes_by_year,
    infer_home,
    on_this_day,
    place_text,
    same_day_in,
)

LISBON = (38.7117, -9.1300)
PORTO = (41.1496, -8.6110)
PARIS = (48.8566, 2.3522)
BERLIN = (52.5200, 13.4050)
MADRID = (40.4168, -3.7038)
COIMBRA = (40.2033, -8.4103)
FARO = (37.0194, -7.9304)
EVORA = (38.5714, -7.9135)
SEVILLE = (37.3891, -5.9845)


@pytest.fixture(scope="module")
def geocoder() -> Geocoder:
    return Geocoder()


class Library:
    """Generated captures: ids in order of creation."""

    def __init__(self) -> None:
        self.captures: list[Capture] = []

    def shoot(
        self, when: datetime | None, where: tuple[float, float] | None, jitter: float = 0.0, count: int = 1
    ) -> list[int]:
        ids = []
        for k in range(count):
            image_id = len(self.captures) + 1
            position = (
                (None, None) if where is None else (where[0] + jitter * (k % 3), where[1] - jitter * (k % 2))
            )
            taken = None if when is None else when + timedelta(minutes=20 * k)
            self.captures.append(Capture(image_id, taken, *position))
            ids.append(image_id)
        return ids

    def days(
        self, first: date, n: int, where: tuple[float, float], hours: tuple[int, ...] = (9, 19)
    ) -> list[int]:
        ids = []
        for d in range(n):
            day = first + timedelta(days=d)
            spot = (where[0] + 0.01 * (d % 3), where[1] - 0.01 * (d % 4))  # about town
            for h in hours:
                ids += self.shoot(datetime(day.year, day.month, day.day, h), spot)
        return ids


def test_home_week_weekend_abroad_and_home_again(geocoder: Geocoder) -> None:
    """A week at home in Lisbon, a weekend in Paris, home days after: home is Lisbon, the weekend
    is one trip titled by its place and dates, no home photo is part of it."""
    lib = Library()
    home_before = lib.days(date(2024, 5, 4), 6, LISBON)  # Sat 4 - Thu 9
    departure = lib.shoot(datetime(2024, 5, 10, 7), LISBON)  # the morning at home
    paris = []
    for day in (10, 11, 12):
        paris += lib.shoot(datetime(2024, 5, day, 11), PARIS, jitter=0.01, count=4)
    home_after = lib.days(date(2024, 5, 13), 5, LISBON)
    home = infer_home(lib.captures)
    assert home is not None and home.days == 12
    assert math.dist((home.latitude, home.longitude), LISBON) < 0.05
    trips = find_trips(lib.captures, locator=geocoder)
    assert len(trips) == 1
    trip = trips[0]
    assert trip.title == "Paris, 10–12 May 2024"
    assert trip.members == paris and trip.place == "Paris" and trip.countries == ["FR"]
    assert set(trip.members).isdisjoint(home_before + departure + home_after)
    assert trip.start == date(2024, 5, 10) and trip.end == date(2024, 5, 12)
    assert trip.cover in paris and trip.distance_km > 1400
    assert [len(p.members) for p in trip.parts] == [12]  # nights away do not split it
    assert trip.parts[0].place == "Paris"


def test_multi_city_trip_and_many_places(geocoder: Geocoder) -> None:
    lib = Library()
    lib.days(date(2023, 3, 1), 40, BERLIN)
    porto = lib.days(date(2023, 5, 30), 3, PORTO, hours=(10, 14, 18))
    lisbon = lib.days(date(2023, 6, 2), 3, LISBON, hours=(10, 14, 18))
    lib.days(date(2023, 6, 5), 2, BERLIN)
    tour = []
    for k, city in enumerate((PORTO, COIMBRA, LISBON, EVORA, FARO)):
        tour += lib.days(date(2023, 8, 1) + timedelta(days=k), 1, city, hours=(10, 16))
    lib.days(date(2023, 8, 6), 2, BERLIN)
    iberia = []
    for k, city in enumerate((PORTO, MADRID, SEVILLE, LISBON)):
        iberia += lib.days(date(2023, 12, 29) + timedelta(days=k), 1, city, hours=(10, 16))
    trips = find_trips(lib.captures, locator=geocoder)
    assert [t.title for t in trips] == [
        "Porto and Lisbon, 30 May – 4 June 2023",
        "Portugal, 1–5 August 2023",
        "Portugal and Spain, 29 December 2023 – 1 January 2024",
    ]
    first = trips[0]
    assert first.members == porto + lisbon
    assert [(p.place, p.members) for p in first.parts] == [("Porto", porto), ("Lisbon", lisbon)]
    assert first.cover in porto + lisbon  # both parts are the same size: the earlier one
    assert trips[1].members == tour and trips[2].members == iberia
    assert trips[2].countries == ["PT", "ES"]


def test_suburbs_count_as_their_city_in_a_title(geocoder: Geocoder) -> None:
    """GeoNames names Suita and Toyonaka on their own; in a trip's title they are Osaka."""
    lib = Library()
    lib.days(date(2024, 1, 1), 20, BERLIN)
    osaka = lib.days(date(2024, 4, 1), 2, (34.6937, 135.5023), hours=(9, 11, 13))
    osaka += lib.days(date(2024, 4, 3), 1, (34.7595, 135.5169), hours=(9, 11, 13))  # Suita
    osaka += lib.days(date(2024, 4, 4), 1, (34.7833, 135.4694), hours=(9, 11, 13))  # Toyonaka
    (trip,) = find_trips(lib.captures, locator=geocoder)
    assert trip.members == osaka
    assert trip.title == "Osaka, 1–4 April 2024"
    positions = [c.position for c in lib.captures if c.image_id in osaka]
    places = geocoder.locate_many(positions)  # type: ignore[arg-type]
    assert {p.city for p in places if p} == {"Osaka", "Suita", "Toyonaka"}
    assert place_text(places, positions=positions) == "Osaka"
    assert place_text(places) == "Japan"  # without positions nothing is merged: three cities
    assert place_text(places, MomentRules(title_merge_km=1), positions) == "Japan"


def test_trip_splits_and_what_is_no_trip() -> None:
    """Titles without places, a gap of days without photos, a lone stray fix, photos without a
    time or a position, and the "no fix" (0, 0) are handled cleanly."""
    lib = Library()
    lib.days(date(2022, 1, 1), 60, BERLIN)
    first = lib.days(date(2022, 3, 5), 2, PARIS)
    second = lib.days(date(2022, 3, 10), 2, PARIS)  # three days without photos: another trip
    lib.days(date(2022, 3, 20), 3, BERLIN)
    lib.shoot(datetime(2022, 3, 21, 12), MADRID)  # one stray fix on a home day
    lib.shoot(None, PARIS, count=5)  # no time
    lib.shoot(datetime(2022, 4, 1, 12), None, count=5)  # no position
    lib.shoot(datetime(2022, 4, 2, 12), (0.0, 0.0), count=5)  # "no fix"
    lib.shoot(datetime(2022, 4, 3, 12), (math.nan, 3.0), count=5)
    lib.shoot(datetime(2022, 4, 4, 12), (95.0, 3.0), count=5)
    trips = find_trips(lib.captures)  # no locator and no places: dates only
    assert [(t.title, t.members) for t in trips] == [("5–6 March 2022", first), ("10–11 March 2022", second)]
    # allowing longer gaps joins them
    joined = find_trips(lib.captures, MomentRules(trip_max_gap_days=3))
    assert [t.members for t in joined] == [first + second]
    # a shorter away distance does not make home photos a trip; a longer one drops Paris
    assert find_trips(lib.captures, MomentRules(away_km=2000)) == []
    assert find_trips([c for c in lib.captures if c.position is None]) == []
    assert find_trips([]) == [] and infer_home([]) is None


def test_home_is_weighted_by_days_and_follows_a_move() -> None:
    lib = Library()
    # 2021: Berlin on 40 days, two photos each; a 5-day holiday in Madrid with 60 photos a day
    lib.days(date(2021, 2, 1), 40, BERLIN)
    for d in range(5):
        lib.shoot(datetime(2021, 7, 1 + d, 9), MADRID, jitter=0.001, count=60)
    assert infer_home(lib.captures).days == 40  # type: ignore[union-attr]
    # 2022: moved to Lisbon, 50 days there, and a weekend back in Berlin
    lisbon_life = lib.days(date(2022, 3, 1), 50, LISBON)
    berlin_visit = lib.days(date(2022, 6, 4), 2, BERLIN)
    homes = homes_by_year(lib.captures)
    assert math.dist((homes[2021].latitude, homes[2021].longitude), BERLIN) < 0.05
    assert math.dist((homes[2022].latitude, homes[2022].longitude), LISBON) < 0.05
    trips = find_trips(lib.captures)
    assert [t.start for t in trips] == [date(2021, 7, 1), date(2022, 6, 4)]
    assert trips[1].members == berlin_visit and set(lisbon_life).isdisjoint(trips[1].members)
    # a home the caller sets wins: then life in Lisbon is away
    given = homes[2021]
    assert any(set(lisbon_life) & set(t.members) for t in find_trips(lib.captures, home=given))


def test_cover_prefers_the_score_hook() -> None:
    lib = Library()
    lib.days(date(2024, 1, 1), 10, BERLIN)
    paris = lib.days(date(2024, 2, 1), 2, PARIS, hours=(9, 12, 15, 18))
    trip = find_trips(lib.captures)[0]
    assert trip.cover in paris
    favourite = paris[5]
    hooked = find_trips(lib.captures, score=lambda i: 10.0 if i == favourite else None)[0]
    assert hooked.cover == favourite
    assert find_trips(lib.captures, score=lambda i: None)[0].cover == trip.cover


def test_events_split_at_gaps_and_jumps() -> None:
    lib = Library()
    morning = lib.shoot(datetime(2024, 4, 1, 9), LISBON, count=3)
    evening = lib.shoot(datetime(2024, 4, 1, 18), LISBON, count=3)  # 8 h later, near home: new event
    porto = lib.shoot(datetime(2024, 4, 3, 10), PORTO, count=3)  # away: the nights do not split
    porto += lib.shoot(datetime(2024, 4, 3, 21), PORTO, count=2)
    porto += lib.shoot(datetime(2024, 4, 4, 16), PORTO, count=2)
    glitch = lib.shoot(datetime(2024, 4, 4, 17), MADRID)  # one wrong fix between Porto photos
    porto += glitch + lib.shoot(datetime(2024, 4, 4, 18), PORTO, count=2)
    train = lib.shoot(datetime(2024, 4, 4, 22), COIMBRA, count=2)  # 110 km in 2 h: a jump
    quiet = lib.shoot(datetime(2024, 4, 6, 9), None, count=2)  # 35 h later, no position: a gap
    home = Home(*LISBON, days=100)
    events = find_events(lib.captures, home=home)
    assert [e.members for e in events] == [morning, evening, porto, train, quiet]
    assert events[4].latitude is None and events[0].start == datetime(2024, 4, 1, 9)
    # without a home every gap is the away gap: morning and evening are one event
    assert find_events(lib.captures)[0].members == morning + evening
    # LibrePhotos' 36 h keeps the quiet photos with the train
    assert find_events(lib.captures, MomentRules(event_gap_hours=36), home)[-1].members == train + quiet
    assert find_events([Capture(1, None, *LISBON)]) == []


def test_event_titles_use_places() -> None:
    lisbon = Place("Lisbon", "Lisbon", "Portugal", "PT", 0.5)
    caps = [Capture(i, datetime(2024, 6, 1, 10 + i), *LISBON, place=lisbon) for i in range(3)]
    assert find_events(caps)[0].title == "Lisbon, 1 June 2024"


@pytest.mark.parametrize(
    ("start", "end", "text"),
    [
        (date(2024, 5, 12), date(2024, 5, 12), "12 May 2024"),
        (date(2024, 5, 12), date(2024, 5, 16), "12–16 May 2024"),
        (date(2024, 5, 28), date(2024, 6, 3), "28 May – 3 June 2024"),
        (date(2024, 12, 30), date(2025, 1, 2), "30 December 2024 – 2 January 2025"),
        (date(2025, 1, 2), date(2024, 12, 30), "30 December 2024 – 2 January 2025"),
    ],
)
def test_date_ranges(start: date, end: date, text: str) -> None:
    assert date_range_text(start, end) == text


def test_place_text_rules() -> None:
    def city(name: str, country: str = "Portugal", code: str = "PT") -> Place:
        return Place(name, None, country, code, 1.0)

    sea = Place(None, None, None, None, 900.0, at_sea=True)
    assert place_text([city("Porto")] * 9 + [city("Aveiro")]) == "Porto and Aveiro"  # 10% is named
    assert place_text([city("Porto")] * 19 + [city("Aveiro")]) == "Porto"  # 5% is not
    assert place_text([city("Porto"), city("Lisbon"), city("Faro")]) == "Portugal"
    assert place_text([city("Porto"), city("Lisbon"), city("Faro")], MomentRules(title_max_places=3)) == (
        "Porto, Lisbon and Faro"
    )
    many = [city(str(k), f"Country {k}", str(k)) for k in range(5)]
    assert place_text(many) == "5 countries"
    assert place_text([sea, sea]) == "At sea"
    assert place_text([sea, city("Porto")]) == "Porto"
    assert place_text([None, None]) == ""


def test_on_this_day_across_years_leap_day_and_year_end() -> None:
    lib = Library()
    y2019 = lib.shoot(datetime(2019, 5, 12, 10), LISBON, count=2)
    y2021_edge = lib.shoot(datetime(2021, 5, 15, 23), None)  # +3 days: inside
    lib.shoot(datetime(2021, 5, 16, 0, 30), None)  # +4 days: outside
    y2023 = lib.shoot(datetime(2023, 5, 9, 8), None)  # -3 days: inside
    lib.shoot(datetime(2024, 5, 11, 8), None)  # this year: never a memory
    lib.shoot(None, None, count=3)  # no time: ignored
    memories = on_this_day(date(2024, 5, 12), lib.captures)
    assert [(m.year, m.years_ago, m.members) for m in memories] == [
        (2023, 1, y2023),
        (2021, 3, y2021_edge),
        (2019, 5, y2019),
    ]
    assert memories[0].anchor == date(2023, 5, 12)
    assert [m.members for m in on_this_day(date(2024, 5, 12), lib.captures, window_days=0)] == [y2019]

    # 29 February: the 28th in common years; the 29th itself in leap years
    leap = Library()
    feb29_2020 = leap.shoot(datetime(2020, 2, 29, 12), None)
    feb27_2023 = leap.shoot(datetime(2023, 2, 27, 12), None)
    mar03_2023 = leap.shoot(datetime(2023, 3, 3, 12), None)  # Feb 28 + 3 days
    leap.shoot(datetime(2023, 3, 4, 12), None)  # + 4: outside
    memories = on_this_day(date(2024, 2, 29), leap.captures)
    assert [(m.year, m.anchor, m.members) for m in memories] == [
        (2023, date(2023, 2, 28), feb27_2023 + mar03_2023),
        (2020, date(2020, 2, 29), feb29_2020),
    ]
    assert same_day_in(date(2024, 2, 29), 2100) == date(2100, 2, 28)  # not a leap year
    # asked on 1 March of a common year, 29 February of a leap year is 1 day before
    assert on_this_day(date(2025, 3, 1), leap.captures, window_days=1)[-1].members == feb29_2020

    # a window across the year's end: 2 January asks for 30 December - 5 January of earlier years
    ends = Library()
    dec30 = ends.shoot(datetime(2022, 12, 30, 20), None)
    jan02 = ends.shoot(datetime(2023, 1, 2, 9), None)
    ends.shoot(datetime(2023, 1, 6, 9), None)  # 4 days after 2 January
    recent = ends.shoot(datetime(2024, 12, 31, 9), None)  # two days ago: not a memory
    memories = on_this_day(date(2025, 1, 2), ends.captures)
    assert [(m.year, m.members) for m in memories] == [(2023, dec30 + jan02)]
    assert recent[0] not in memories[0].members
    # and from the other side: 30 December finds 2 January of the year after each earlier one
    assert [(m.year, m.members) for m in on_this_day(date(2023, 12, 30), ends.captures)] == [
        (2022, dec30 + jan02)
    ]
    with pytest.raises(ValueError):
        on_this_day(date(2024, 1, 1), ends.captures, window_days=-1)
    # one index answers every date as the function does
    everything = lib.captures + leap.captures + ends.captures
    index = OnThisDayIndex(everything)
    for day in (date(2024, 5, 12), date(2024, 2, 29), date(2025, 1, 2), date(2023, 12, 30), date(2025, 3, 1)):
        assert index.query(day) == on_this_day(day, everything)
        assert index.query(day, 1) == on_this_day(day, everything, 1)
    assert OnThisDayIndex([]).query(date(2024, 1, 1)) == []


def test_aware_times_are_read_as_wall_clock() -> None:
    tz = timezone(timedelta(hours=9))
    caps = [Capture(1, datetime(2020, 7, 1, 23, 30, tzinfo=tz)), Capture(2, datetime(2020, 7, 2, 0, 30))]
    assert [e.members for e in find_events(caps)] == [[1, 2]]
    assert [m.members for m in on_this_day(date(2024, 7, 1), caps, window_days=0)] == [[1]]


def test_rules_are_checked() -> None:
    with pytest.raises(ValueError):
        MomentRules(away_km=0)
    with pytest.raises(ValueError):
        MomentRules(trip_min_photos=0)
    with pytest.raises(ValueError):
        MomentRules(title_min_share=1.5)

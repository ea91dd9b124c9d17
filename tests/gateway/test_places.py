"""Offline reverse geocoding (gateway/places.py) over the real GeoNames extract and land outline."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ambience_support.photos import PHOTOS_FULL
from gateway.photo_metadata import read_metadata
from gateway.places import LAND_OUTLINE, Geocoder, LandOutline, Place, display_name, topojson_rings


@pytest.fixture(scope="module")
def geocoder() -> Geocoder:
    g = Geocoder()
    g.load()
    return g


@pytest.mark.parametrize(
    ("lat", "lon", "city", "region", "country", "code"),
    [
        (38.7117, -9.1300, "Lisbon", "Lisbon", "Portugal", "PT"),  # the Alfama: a quarter of Lisbon
        (41.1406, -8.6131, "Porto", "Porto", "Portugal", "PT"),
        (48.8584, 2.2945, "Paris", "Île-de-France", "France", "FR"),  # Eiffel Tower, 4 km from the centre
        (48.8867, 2.3431, "Paris", "Île-de-France", "France", "FR"),  # Montmartre (a Paris quarter's county)
        (40.7580, -73.9855, "New York City", "New York", "United States", "US"),  # Times Square
        (40.7440, -74.0324, "Hoboken", "New Jersey", "United States", "US"),  # not New York's region
        (-33.8568, 151.2153, "Sydney", "New South Wales", "Australia", "AU"),  # Opera House, not The Rocks
        (48.8049, 2.1204, "Versailles", "Île-de-France", "France", "FR"),  # a town of its own near Paris
        (35.6595, 139.7005, "Tokyo", "Tokyo", "Japan", "JP"),  # Shibuya
    ],
)
def test_known_places(
    geocoder: Geocoder, lat: float, lon: float, city: str, region: str, country: str, code: str
) -> None:
    place = geocoder.locate(lat, lon)
    assert place is not None
    assert (place.city, place.region, place.country, place.country_code) == (city, region, country, code)
    assert not place.at_sea and place.distance_km < 25
    assert display_name(place) == f"{city}, {country}"


def test_at_sea_and_remote(geocoder: Geocoder) -> None:
    atlantic = geocoder.locate(30.0, -40.0)
    assert atlantic is not None and atlantic.at_sea and atlantic.country is None
    assert atlantic.distance_km > 1000
    assert display_name(atlantic) == "At sea"
    channel = geocoder.locate(50.2, -1.0)  # 46 km off the Isle of Wight: too far for a town's name
    assert channel is not None and channel.at_sea
    near_port = geocoder.locate(38.69, -9.18)  # on the Tagus, within reach of Lisbon: named after it
    assert near_port is not None and near_port.city is not None and near_port.country_code == "PT"
    siberia = geocoder.locate(66.0, 100.0)  # on land, 190 km from the nearest place
    assert siberia is not None and siberia.city is None and siberia.country_code == "RU"
    assert display_name(siberia) == f"{siberia.region}, Russia"
    antarctica = geocoder.locate(-80.0, 0.0)
    assert (
        antarctica is not None
        and antarctica.country_code == "AQ"
        and display_name(antarctica) == "Antarctica"
    )
    # Greenland's ice sheet, 550 km from any place: land, but no name worth guessing
    greenland = geocoder.locate(75.0, -40.0)
    assert greenland == Place(None, None, None, None, greenland.distance_km) and display_name(greenland) == ""


def test_across_the_antimeridian(geocoder: Geocoder) -> None:
    fiji = geocoder.locate(-17.8, 178.0)  # Viti Levu, 45 km from the nearest place: land, so Fiji
    assert fiji is not None and fiji.country_code == "FJ" and not fiji.at_sea
    chukotka = geocoder.locate(66.0, -175.5)
    assert chukotka is not None and chukotka.country_code == "RU"
    # a place just west of 180 is found from just east of it: distances wrap
    a = geocoder.locate(-16.8, 179.99)
    b = geocoder.locate(-16.8, -179.99)
    assert a is not None and b is not None and abs(a.distance_km - b.distance_km) < 3


@pytest.mark.parametrize(
    "position",
    [
        (math.nan, 0.0),
        (0.0, math.nan),
        (math.inf, 0.0),
        (91.0, 0.0),
        (-90.5, 0.0),
        (0.0, 180.5),
        (0.0, -181.0),
        (None, 1.0),
        (1.0, None),
        ("north", 2.0),
    ],
)
def test_invalid_positions_give_none(geocoder: Geocoder, position: tuple) -> None:
    assert geocoder.locate(*position) is None


def test_batch_matches_single_lookups_and_keeps_order(geocoder: Geocoder) -> None:
    positions = [
        (38.7117, -9.13),
        (math.nan, 1.0),
        (30.0, -40.0),
        (41.1406, -8.6131),
        (95.0, 0.0),
        (90.0, 0.0),
    ]
    batch = geocoder.locate_many(positions)
    assert batch == [geocoder.locate(*p) for p in positions]
    assert batch[1] is None and batch[4] is None
    assert batch[0].city == "Lisbon" and batch[3].city == "Porto" and batch[2].at_sea
    assert batch[5] is not None and batch[5].at_sea  # the North Pole is sea ice, no land
    assert geocoder.locate_many([]) == []


def test_many_threads_share_one_lazy_load() -> None:
    fresh = Geocoder()
    positions = [(38.7117, -9.13), (48.8584, 2.2945), (-33.8568, 151.2153), (30.0, -40.0)] * 8
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda p: fresh.locate(*p), positions))
    index = fresh._index
    assert index is not None
    assert [display_name(a) for a in answers[:4]] == [
        "Lisbon, Portugal",
        "Paris, France",
        "Sydney, Australia",
        "At sea",
    ]
    assert answers == answers[:4] * 8
    fresh.locate(0.5, 0.5)
    assert fresh._index is index  # loaded once


def test_display_name_parts() -> None:
    full = Place("Sintra", "Lisbon", "Portugal", "PT", 0.9)
    assert display_name(full) == "Sintra, Portugal"
    assert display_name(full, with_region=True) == "Sintra, Lisbon, Portugal"
    assert (
        display_name(Place("Lisbon", "Lisbon", "Portugal", "PT", 0.5), with_region=True) == "Lisbon, Portugal"
    )
    assert display_name(Place(None, "Valais", "Switzerland", "CH", 40.0)) == "Valais, Switzerland"
    assert display_name(Place(None, None, None, None, 900.0, at_sea=True)) == "At sea"
    assert display_name(None) == ""


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Geocoder(city_km=0)
    with pytest.raises(ValueError):
        Geocoder(city_km=50, region_km=10)


def test_a_nearer_city_limit_leaves_the_countryside_unnamed() -> None:
    strict = Geocoder(city_km=0.5, region_km=200)
    near = strict.locate(38.7117, -9.1300)  # the Alfama place itself is 0.2 km away
    assert near is not None and near.city is not None
    far = strict.locate(38.75, -9.25)  # inland, over 0.5 km from every place: region and country
    assert far is not None and far.city is None and far.country_code == "PT" and not far.at_sea


def test_land_outline() -> None:
    land = LandOutline.load()
    for lat, lon in [
        (0.0, 20.0),
        (23.0, 12.0),
        (-25.0, 134.0),
        (55.0, 90.0),
        (-89.9, 45.0),
        (-85.0, -170.0),
        (72.0, -40.0),
    ]:
        assert land.contains(lat, lon), (lat, lon)
    for lat, lon in [(0.0, -150.0), (30.0, -40.0), (-40.0, 80.0), (42.0, 51.0), (89.0, 0.0), (0.0, 0.0)]:
        assert not land.contains(lat, lon), (lat, lon)
    rings = topojson_rings(json.loads(LAND_OUTLINE.read_text()))
    assert len(rings) > 100 and all(r.shape[1] == 2 for r in rings)
    assert LAND_OUTLINE.stat().st_size < 100_000  # the page loads it: keep it small


def test_real_photo_gps() -> None:
    """The two originals of the shared photos that carry a GPS position, read as the gateway reads
    an upload."""
    expected = {"croatia.jpg": "Dubrovnik, Croatia", "lizard.jpg": "Piazza Brembana, Italy"}
    paths = [Path(PHOTOS_FULL) / name for name in expected]
    if not all(p.exists() for p in paths):
        pytest.skip(f"real photographs not found at {PHOTOS_FULL}")
    positions = []
    for path in paths:
        meta = read_metadata(path.read_bytes(), path.name)
        positions.append((meta["gps_latitude"], meta["gps_longitude"]))
    places = Geocoder().locate_many(positions)
    assert [display_name(p) for p in places] == list(expected.values())
    assert places[1] is not None and places[1].region == "Lombardy"

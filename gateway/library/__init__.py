"""The library: what a person sees first. Every image newest first (``/library``, keyset-paged,
filters that combine), the months it spans (the scrubber), where photos were taken (the ``place``
step and its backfill, ``/places``), and moments that know time and place (trips, events, on this
day). docs/library.md describes the routes and the page's views.

- ``schema.py``: the table (migration component ``library``);
- ``query.py``: rows, filters, the keyset cursor (no HTTP, no database);
- ``store.py``: the rows read and written, pages, months, captures;
- ``places.py``: counts per country and city, the map's points, the backfill's reads;
- ``placing.py``: the ``place`` step that follows every add and the backfill;
- ``text.py``: the text filter's hits (CLIP or OCR);
- ``moments.py``: trips, events and on this day over the rows (gateway/trips.py), with visual
  sub-moments.

:class:`Library` builds them from the gateway's settings; the routes are gateway/routes/library.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.explore import Explorer
from gateway.library.moments import LibraryMoments
from gateway.library.places import LibraryPlaces
from gateway.library.placing import PlacesBackfill, PlaceStep
from gateway.library.store import LibraryStore
from gateway.library.text import TextHits
from gateway.places import Geocoder, display_name, valid_position
from gateway.proxy import ServiceClients
from gateway.settings import GatewaySettings
from gateway.trips import Home, MomentRules
from services.common.postgres.database import SqlRunner


def moment_rules(settings: GatewaySettings) -> MomentRules:
    """The rules of events and trips, from the gateway's settings."""
    return MomentRules(
        event_gap_hours=settings.event_gap_hours,
        home_event_gap_hours=settings.home_event_gap_hours,
        event_jump_km=settings.event_jump_km,
        home_radius_km=settings.home_radius_km,
        home_min_days=settings.home_min_days,
        away_km=settings.trip_away_km,
        trip_max_gap_days=settings.trip_max_gap_days,
        trip_min_photos=settings.trip_min_photos,
        title_max_places=settings.trip_title_max_places,
        title_min_share=settings.trip_title_min_share,
        title_merge_km=settings.trip_title_merge_km,
    )


def home_of(settings: GatewaySettings) -> Home | None:
    """The home the settings give (None: inferred from the photos); ValueError for an invalid one."""
    if settings.home_position is None:
        return None
    lat, lon = settings.home_position
    if not valid_position(lat, lon):
        raise ValueError(f"AMBIENCE_GATEWAY_HOME_POSITION is no position: {list(settings.home_position)}")
    return Home(lat, lon, 0)


@dataclass
class Library:
    store: LibraryStore
    places: LibraryPlaces
    geocoder: Geocoder
    step: PlaceStep
    backfill: PlacesBackfill
    moments: LibraryMoments
    text: TextHits

    @classmethod
    def build(
        cls,
        settings: GatewaySettings,
        db: SqlRunner,
        clients: ServiceClients,
        enabled: set[str],
        explorer: Explorer,
    ) -> Library:
        store, places = LibraryStore(db, people="faces" in enabled), LibraryPlaces(db)
        geocoder = Geocoder(settings.places_city_km, max(settings.places_region_km, settings.places_city_km))
        return cls(
            store=store,
            places=places,
            geocoder=geocoder,
            step=PlaceStep(store, geocoder),
            backfill=PlacesBackfill(store, places, geocoder),
            moments=LibraryMoments(store, geocoder, moment_rules(settings), home_of(settings), explorer),
            text=TextHits(clients, enabled, settings.library_text_hits),
        )

    def place_info(self, image_ids: list[int]) -> dict[int, dict[str, Any]]:
        """What /image_info adds per image: its ``place`` (None without one)."""
        rows = self.store.rows(image_ids)
        return {i: {"place": place_json(rows.get(i))} for i in image_ids}

    async def start(self) -> None:
        await self.backfill.start_if_needed()

    async def stop(self) -> None:
        await self.backfill.stop()


def place_json(row: Any) -> dict[str, Any] | None:
    """A library row's place as /image_info shows it (None without one)."""
    place = getattr(row, "place", None)
    if place is None:
        return None
    return {
        "city": place.city,
        "region": place.region,
        "country": place.country,
        "country_code": place.country_code,
        "at_sea": place.at_sea,
        "name": display_name(place, with_region=True),
    }

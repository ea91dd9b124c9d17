"""Gateway settings and the table of services it talks to.

Every service the gateway knows is a descriptor of ``services/registry.py`` (an :data:`Upstream`):
its name, the routes it serves (the route names of the upstream ambience gateway, so a gallery
written for it works unchanged), whether it stores per-image features (then
``/calculate_all_image_features`` fans out to it) and whether it answers ``/reverse_search``
(under its ``result_key``). Base URLs default to the port the service is registered with
(honouring its own ``AMBIENCE_<SERVICE>_PORT``) and are overridden with
``AMBIENCE_GATEWAY_SERVICE_URLS``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import ClassVar

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.duplicates.keeper import (
    DEFAULT_COVER_RULES,
    DEFAULT_FORMAT_PRIORITY,
    DEFAULT_KEEPER_RULES,
    KeeperRule,
)
from services.common.descriptor import ServiceDescriptor
from services.common.settings import CommonSettings, settings_rows
from services.registry import SERVICES

#: The gateway's view of a service is its descriptor (services/<service>/descriptor.py).
Upstream = ServiceDescriptor

UPSTREAMS: dict[str, Upstream] = dict(SERVICES)

SEARCH_SERVICES = [u.name for u in UPSTREAMS.values() if u.search]


def registered_port(name: str) -> int:
    """The port a service listens on by default: its own settings' port (honouring
    ``AMBIENCE_<SERVICE>_PORT``), or the descriptor's when its extra is not installed."""
    info = SERVICES[name]
    with contextlib.suppress(Exception):  # a service whose extra is not installed
        return int(info.settings_class()().resolved_port())
    return info.port


class GatewaySettings(BaseSettings):
    """Settings of the gateway (env prefix ``AMBIENCE_GATEWAY_``; the API key is ``AMBIENCE_API_KEY``)."""

    model_config = SettingsConfigDict(env_prefix="AMBIENCE_GATEWAY_", extra="ignore", populate_by_name=True)

    service_name: ClassVar[str] = "gateway"
    default_port: ClassVar[int] = 44444

    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 inside containers")
    port: int = Field(44444, description="TCP port of the gateway")
    data_dir: Path | None = Field(
        None,
        description="Gateway data (spool of uploads being fanned out); default $AMBIENCE_DATA_DIR/gateway",
    )
    api_key: str | None = Field(
        None,
        validation_alias=AliasChoices("AMBIENCE_API_KEY", "api_key"),
        description="When set, every route but /health needs it "
        "(`Authorization: Bearer KEY` or `X-API-Key: KEY`)",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed by CORS, JSON list (e.g. `["https://gallery"]`); none by default',
    )
    services: list[str] = Field(
        default_factory=lambda: list(UPSTREAMS),
        description="Services the gateway uses, JSON list (fan-outs skip the others)",
    )
    service_urls: dict[str, str] = Field(
        default_factory=dict,
        description='Base URL per service, JSON (e.g. `{"phash": "http://10.0.0.5:8000"}`); '
        "default http://127.0.0.1:<registered port>",
    )
    timeout_s: float = Field(30.0, gt=0, description="Default timeout of a call to a service")
    service_timeouts_s: dict[str, float] = Field(
        default_factory=lambda: {"local_features": 60.0, "ocr": 120.0, "captioner": 120.0},
        description="Timeout per service in seconds, JSON (overrides the default)",
    )
    search_timeout_s: float = Field(
        10.0, gt=0, description="Timeout of each service's part of /reverse_search (a slow one is left out)"
    )
    search_timeouts_s: dict[str, float] = Field(
        default_factory=lambda: {"local_features": 20.0},
        description="/reverse_search timeout per service in seconds, JSON (overrides search_timeout_s)",
    )
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1, description="Largest accepted upload")
    max_inflight_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1,
        description="Uploads held at once while they are fanned out or searched; past it, 503 with "
        "Retry-After (one upload alone is always taken)",
    )
    decode_budget_mb: int = Field(
        1024,
        ge=1,
        description="Memory for pictures being decoded at once, for thumbnails and for the stills the "
        "services get of videos, HEIC and AVIF (MiB); past it a thumbnail is skipped (the page's backfill "
        "makes it later) and an upload gets 503 with Retry-After",
    )
    video_timeout_s: float = Field(
        20.0,
        gt=0,
        description="Time one video upload may take to be opened, probed, seeked and decoded into the "
        "still the services get; past it, 422",
    )
    max_json_bytes: int = Field(
        1024 * 1024, ge=1, description="Largest accepted JSON request body (/catalog_status takes 10,000 ids)"
    )
    result_k: int = Field(20, ge=1, description="Results asked from each service in /reverse_search")
    fusion_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "phash": 1.0,
            "local_features": 1.0,
            "global_features": 1.0,
            "image_text": 1.0,
            "color": 1.0,
            # Pictures of the same person are not copies nor look-alikes: faces_res is reported,
            # not fused (people have their own routes).
            "faces": 0.0,
        },
        description="Weight of each service in the reciprocal-rank fusion, JSON (a service not named "
        "weighs 1.0; 0 leaves it out of unified_res)",
    )
    # Weights and constant chosen by `python -m bench.evaluate` (docs/benchmarks.md, "Fusion
    # settings"): copy detection on 104 photos x 13 transforms, selected on half the photos and
    # confirmed on the other half. In the 2026-12-01 run (relative gate in the grid) the defaults
    # scored recall@1 0.999 selection / 0.993 held-out and no candidate beat them on the selection
    # half; caltech101-dev's grid ("Similar pictures") is why the relative gate stays. image_text had
    # no weights offline and was not evaluated.
    fusion_constant: float = Field(
        1.0,
        ge=0,
        description="Reciprocal-rank fusion constant c in w / (c + rank); small c favours top ranks",
    )
    fusion_max_distance: dict[str, float] = Field(
        default_factory=lambda: {"phash": 128},
        description="Per service, JSON: only hits within this distance take part in the fusion "
        "(phash: unrelated photos are 150-290 bits apart)",
    )
    fusion_relative_distance: dict[str, float] = Field(
        default_factory=lambda: {"color": 0.5, "phash": 0.5},
        description="Per service, JSON: only hits within this ratio of the median distance of the "
        "service's own list take part in the fusion (copies stand out, neighbours of a photo without a "
        "copy do not; see docs/gateway.md)",
    )
    fusion_tie_tolerance: dict[str, float] = Field(
        default_factory=lambda: {"local_features": 0.25},
        description="Per service, JSON: hits whose scores are within this relative margin share a rank "
        "in the fusion (local_features: recoloured copies of one scene get near-equal inlier counts)",
    )
    fused_length: int = Field(20, ge=1, description="Length of unified_res")
    duplicate_distance: float = Field(
        96,
        ge=0,
        description="phash Hamming distance (of 576 bits) that makes a duplicate: JPEG-30 and half-size "
        "copies of the shared photos reach 88, different photos 156 and more (recolourings of one shot "
        "16-78: see COPY_MAX_COLOR_DISTANCE)",
    )
    explore_sources: list[str] = Field(
        default_factory=lambda: ["image_text", "global_features"],
        description="/moments and /map: the default source is the first of these that is enabled, JSON",
    )
    moment_max_gap_s: float = Field(
        6 * 3600,
        ge=0,
        description="/moments: a moment is split where two photos with capture times, adjacent in time, "
        "are further apart (0 = ignore capture times)",
    )
    similar_distance: float = Field(
        0.2,
        ge=0,
        description="duplicate groups 'similar': embedding distance that makes a near shot (squared L2 of "
        "unit vectors, 2 - 2 cos; EfficientNet-Lite0 on the shared photos: edits of one shot 0.02-0.09, "
        "different photos 0.36 and more)",
    )
    similar_max_gap_s: float = Field(
        30,
        ge=0,
        description="duplicate groups 'similar': near shots are at most this many seconds apart when both "
        "have a capture time",
    )
    duplicate_local_min_inliers: int = Field(
        10,
        ge=0,
        description="Duplicate mode and copies groups: also call a crop a duplicate when local_features "
        "(if enabled) verifies it with this many inliers (0 = phash only)",
    )
    rebuild_crop_searches: int = Field(
        2,
        ge=1,
        le=64,
        description="/duplicate_groups/rebuild of copies: local-feature searches for crops run at once "
        "(one per stored image; each keeps a core of local_features busy)",
    )
    copy_max_color_distance: float = Field(
        7_000_000,
        ge=0,
        description="Duplicate groups 'copies': no link between images whose colour histograms are further "
        "apart than this (the color service's L1, histograms summing to 1e7): a recolouring is a near shot, "
        "not a copy (0 = no colour check; needs the color service)",
    )
    copy_exposure_check: bool = Field(
        True,
        description="Duplicate groups 'copies' and duplicate mode: images whose EXIF exposure times "
        "(DateTimeOriginal and its fraction of a second) differ are no duplicates: two shots of a burst "
        "are near shots, however alike",
    )
    copy_alignment_candidates: int = Field(
        3,
        ge=0,
        le=50,
        description="Duplicate groups 'copies': the colour-nearest stored images whose thumbnails are "
        "aligned with an upload's to find crops of smooth pictures, which local features cannot verify "
        "(0 = off; needs the color service)",
    )
    copy_alignment_min_correlation: float = Field(
        0.98,
        gt=0,
        le=1,
        description="Duplicate groups 'copies': normalised cross-correlation of the aligned thumbnails that "
        "makes a copy (crops of the shared photos 0.99+, different photos at most 0.92)",
    )
    copy_alignment_min_area: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Duplicate groups 'copies': the smallest crop the thumbnail alignment looks for, as a "
        "fraction of the picture's area",
    )
    keeper_rules: list[KeeperRule] = Field(
        default_factory=lambda: list(DEFAULT_KEEPER_RULES),
        description="Duplicate groups: the rules that choose the image to keep, in order, JSON (reference, "
        "resolution, format, file_size, exif, capture_time, sharpness, oldest, newest); the first that tells "
        "the best two apart is the reason shown",
    )
    stack_cover_rules: list[KeeperRule] = Field(
        default_factory=lambda: list(DEFAULT_COVER_RULES),
        description="Stacks (bursts, RAW+JPEG): the rules that choose the cover, in order, JSON",
    )
    keeper_format_priority: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FORMAT_PRIORITY),
        description="The format rule's order, best first, JSON (RAW: every camera RAW format; HEIC: HEIC "
        "and HEIF; other formats by name, e.g. PNG; those not listed rank last)",
    )
    keeper_reference_folders: list[str] = Field(
        default_factory=list,
        description="The reference rule's folders, first preferred, JSON: a file lies in one when the "
        "folder's path appears in its name as the client sent it (`ambience index` sends the path inside "
        "the indexed folder, e.g. Originals/2019/a.jpg lies in Originals)",
    )
    burst_window_s: float = Field(
        1.0,
        ge=0,
        description="Stacks: photos whose exposure times are at most this many seconds apart (and that "
        "look alike) are frames of one burst",
    )
    retry_interval_s: float = Field(
        2.0, gt=0, description="How often the retry worker looks for pending parts"
    )
    retry_backoff_s: float = Field(2.0, gt=0, description="First retry delay; doubles per failed attempt")
    retry_backoff_max_s: float = Field(300.0, gt=0, description="Longest delay between retries")
    retry_batch: int = Field(32, ge=1, description="Pending parts the worker takes per round")
    retry_max_attempts: int = Field(
        300,
        ge=1,
        description="Transient failures after which a part gives up (~1 day at the longest delay); "
        "it stays visible until `ambience catalog retry`",
    )
    deferred_services: list[str] = Field(
        default_factory=lambda: ["image_text", "ocr", "faces", "captioner", "tagger"],
        description="Services an add does not wait for, JSON list: their parts are recorded with the add and "
        "sent at once by the retry worker (the heavy models that duplicate and similar-picture search do not "
        "need at once: text search and faces follow within seconds); `ambience serve` runs them at a lower "
        "CPU priority, so the adds stay quick while they catch up",
    )
    deferred_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="The CPU niceness `ambience serve` runs the deferred services with (0: the same priority "
        "as the others)",
    )
    step_workers: int = Field(
        2,
        ge=1,
        le=64,
        description="Images whose after-add steps (facts, thumbnail, duplicate links) are worked on at "
        "once, in the background (the add answers once the services have stored the image)",
    )
    step_lease_s: float = Field(
        120.0,
        gt=0,
        description="How long a worker holds an image's steps; a worker killed meanwhile leaves them to "
        "another gateway after this (its own restart takes them back at once)",
    )
    runner_state_dir: Path | None = Field(
        None,
        description="Where `ambience serve` marks services unavailable (default $AMBIENCE_DATA_DIR/run)",
    )
    health_timeout_s: float = Field(2.0, gt=0, description="Timeout of each service's /health check")
    max_connections: int = Field(100, ge=1, description="Pooled HTTP connections to the services")
    web: bool = Field(True, description="Serve the web page at / (search, moments, duplicates, map)")
    thumbnail_size: int = Field(
        256, ge=32, le=1024, description="Long side in pixels of the preview kept per image for the page"
    )
    # The library: places, trips, events, on this day (docs/library.md has why each default).
    library_text_hits: int = Field(
        200,
        ge=1,
        le=1000,
        description="/library: how many of the best CLIP or OCR hits the text filter keeps (shown by date)",
    )
    places_city_km: float = Field(
        25.0, gt=0, description="Places: how far the named city may be from a photo's GPS position"
    )
    places_region_km: float = Field(
        200.0,
        gt=0,
        description="Places: on land, how far the nearest known place may be to lend its region and country",
    )
    home_position: tuple[float, float] | None = Field(
        None,
        description="Trips: home as JSON [latitude, longitude]; by default inferred from where photos are "
        "taken on the most days, per year",
    )
    event_gap_hours: float = Field(
        24.0, gt=0, description="Events: hours without photos that end an event away from home"
    )
    home_event_gap_hours: float = Field(
        6.0, gt=0, description="Events: hours without photos that end an event near home"
    )
    event_jump_km: float = Field(
        50.0, gt=0, description="Events: a move this far between two photos starts a new event"
    )
    home_radius_km: float = Field(
        25.0, gt=0, description="Trips: the size of the home area (a metropolitan area)"
    )
    home_min_days: int = Field(
        30, ge=1, description="Trips: days at one place a year needs for a home of its own (a move)"
    )
    trip_away_km: float = Field(50.0, gt=0, description="Trips: farther from home than this is away")
    trip_max_gap_days: int = Field(
        2, ge=0, description="Trips: days without photos one trip may hold (none of them at home)"
    )
    trip_min_photos: int = Field(
        3, ge=1, description="Trips: fewer photos away are a stray position, not a trip"
    )
    trip_title_max_places: int = Field(
        2, ge=1, description="Trips: cities named in a title; more are named by their countries"
    )
    trip_title_min_share: float = Field(
        0.1, ge=0, le=1, description="Trips: the share of a trip's photos a city needs to be in its title"
    )
    trip_title_merge_km: float = Field(
        20.0,
        gt=0,
        description="Trips: a place this near a city with more photos counts as that city in titles",
    )
    on_this_day_window_days: int = Field(
        3, ge=0, le=182, description="On this day: photos this many days either side of the date count"
    )

    people_max_distance: float = Field(
        0.5,
        gt=0,
        le=2,
        description="People: two faces within this Euclidean distance of their descriptors are neighbours "
        "(dlib's same-person threshold is about 0.6; the grouping chains neighbours, so it needs less: on "
        "faces-dev 0.5 keeps look-alikes 0.515 apart and gathers every person with three photos)",
    )
    people_min_faces: int = Field(
        3,
        ge=1,
        le=16,
        description="People: faces within PEOPLE_MAX_DISTANCE (itself included) that found a new person; "
        "fewer wait unassigned until more come",
    )
    people_retry_interval_s: float = Field(
        3600.0,
        gt=0,
        description="People: how often unassigned faces are placed again (only when anything changed "
        "since the last pass, by any gateway replica; 10-15 s of one core at 100,000 faces)",
    )
    people_crop_size: int = Field(
        128, ge=32, le=512, description="People: side in pixels of the face crops kept for the page (WebP)"
    )
    people_suggest_distance: float = Field(
        0.6,
        gt=0,
        le=2,
        description="People: an unnamed person whose mean descriptor is within this of a named person's is "
        'offered as "is this ...?"',
    )
    people_search_distance: float = Field(
        0.6,
        gt=0,
        le=2,
        description="/search_by_face: stored faces within this distance of a face of the upload match it "
        "(dlib's same-person threshold)",
    )

    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else CommonSettings().data_dir / "gateway"

    def resolved_runner_state_dir(self) -> Path:
        return self.runner_state_dir if self.runner_state_dir else CommonSettings().data_dir / "run"

    def resolved_port(self) -> int:
        return self.port

    def enabled(self) -> list[Upstream]:
        unknown = set(self.services) - set(UPSTREAMS)
        if unknown:
            raise ValueError(f"unknown services in AMBIENCE_GATEWAY_SERVICES: {sorted(unknown)}")
        return [UPSTREAMS[name] for name in self.services]

    def url(self, name: str) -> str:
        if name in self.service_urls:
            return self.service_urls[name].rstrip("/")
        return f"http://127.0.0.1:{registered_port(name)}"

    def timeout(self, name: str) -> float:
        return self.service_timeouts_s.get(name, self.timeout_s)

    def search_timeout(self, name: str) -> float:
        return self.search_timeouts_s.get(name, self.search_timeout_s)

    @classmethod
    def describe(cls) -> list[dict[str, object]]:
        return settings_rows(
            cls, {"data_dir": "$AMBIENCE_DATA_DIR/gateway", "runner_state_dir": "$AMBIENCE_DATA_DIR/run"}
        )

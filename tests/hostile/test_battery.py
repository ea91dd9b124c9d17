"""Hostile and careless requests against every service and the gateway, over real HTTP.

For each one: no reply >= 500 (most get the exact 4xx that names the problem), and a valid request
sent right after it on the same kept-alive connection succeeds. Every service answers /health at
the end. The phash service's peak memory while it answers a 100 MP 16-bit PNG is measured from
/proc (VmHWM of the real service process).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest

from ambience_support import media
from ambience_support.hostile import SPECS, UPLOAD_LIMIT, HostileStack, hostile_stack, image_route
from ambience_support.hostile_images import big_png, iso_claiming, jpeg_claiming, png_claiming
from ambience_support.images import encode, png_bomb, synthetic_image
from ambience_support.memory import peak_rss_mb
from ambience_support.memory import rss_mb as current_rss_mb
from ambience_support.pg import TestServer
from ambience_support.processes import running_service
from ambience_support.stacks import start_stack
from services.common.descriptor import ServiceDescriptor
from services.common.features.feature import VectorFeature

#: Left out of day-to-day runs (pytest -m "not slow"): hostile files against every service as a process.
pytestmark = pytest.mark.slow

OVERSIZE = UPLOAD_LIMIT + (2 << 20)  # past the upload limit and its form allowance


@dataclass(frozen=True)
class Case:
    label: str
    path: str
    #: Builds the keyword arguments of ``httpx.Client.request`` (fresh: bodies may be generators).
    request: Callable[[], dict[str, Any]]
    expect: frozenset[int] = field(default_factory=frozenset)  # empty: any status below 500
    method: str = "POST"


@cache
def media_files() -> dict[str, bytes]:
    """Phone and camera files, truncated or lying about their size (tests/hostile_images.py,
    ambience_support/media.py)."""
    heic = media.heic(synthetic_image(13, (320, 240)))
    avif = media.avif(synthetic_image(14, (320, 240)))
    mp4 = media.video("mp4")
    return {
        "truncated HEIC": heic[:400],
        "truncated AVIF": avif[:200],
        "truncated DNG": media.dng(synthetic_image(15, (320, 240)))[:2000],
        "truncated MP4": mp4[: len(mp4) // 2],
        "HEIC claiming 12000^2": iso_claiming(heic, 12000, 12000),
        "AVIF claiming 12000^2": iso_claiming(avif, 12000, 12000),
        "DNG claiming a 60000^2 sensor": media.dng_claiming(60000, 60000),
        "MKV claiming 40000^2 frames": media.video_claiming(40000, 40000),
        "endless video (no keyframe in 3200 packets)": media.video_without_keyframes(),
    }


#: Expected status per media file: truncated or unreadable 422, declared past the pixel limit 413.
MEDIA_STATUS = {
    "truncated HEIC": 422,
    "truncated AVIF": 422,
    "truncated DNG": 422,
    "truncated MP4": 422,
    "HEIC claiming 12000^2": 413,
    "AVIF claiming 12000^2": 413,
    "DNG claiming a 60000^2 sensor": 413,
    "MKV claiming 40000^2 frames": 422,
    "endless video (no keyframe in 3200 packets)": 422,
}


def media_cases(path: str, **fields: str) -> list[Case]:
    """Broken and hostile files of every format a phone or camera writes: each a clear 4xx."""
    return [
        Case(label, path, upload(data, **fields), frozenset({MEDIA_STATUS[label]}))
        for label, data in media_files().items()
    ]


@cache
def images() -> dict[str, bytes]:
    return {
        "small": encode(synthetic_image(11, (160, 120))),
        "truncated": encode(synthetic_image(12))[:600],
        "gray16": big_png("gray16"),
        "rgba": big_png("rgba"),
        "bilevel": big_png("bilevel"),
        "png65535": png_claiming(65535, 65535),
        "jpeg65535": jpeg_claiming(65535, 65535),
        "bomb": png_bomb(),
    }


def upload(data: bytes, **fields: str) -> Callable[[], dict[str, Any]]:
    return lambda: {"files": {"image": ("upload.png", data)}, "data": fields}


def raw_json(text: str) -> Callable[[], dict[str, Any]]:
    return lambda: {"content": text.encode(), "headers": {"content-type": "application/json"}}


def chunked(content_type: str, head: bytes, size: int) -> Callable[[], dict[str, Any]]:
    """A body without Content-Length (chunked transfer encoding) of ``size`` bytes after ``head``."""

    def body() -> Iterator[bytes]:
        yield head
        block = b"\x00" * (256 << 10)
        for _ in range(size // len(block) + 1):
            yield block

    return lambda: {"content": body(), "headers": {"content-type": content_type}}


BOUNDARY = "hostileboundary"
FORM = f"multipart/form-data; boundary={BOUNDARY}"
FILE_HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image_id"\r\n\r\n77\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
    "Content-Type: image/png\r\n\r\n"
).encode()


def many_fields(n: int) -> Callable[[], dict[str, Any]]:
    return lambda: {
        "files": {"image": ("a.jpg", images()["small"])},
        "data": {f"f{i}": "x" for i in range(n)},
    }


def upload_cases(path: str, **fields: str) -> list[Case]:
    """Bodies every image route must refuse cleanly (or answer, for valid but huge pictures)."""
    img = images()
    return [
        Case("empty upload", path, upload(b"", **fields), frozenset({422})),
        Case("non-image", path, upload(b"%PDF-1.4 not an image\n" * 20, **fields), frozenset({422})),
        Case("truncated JPEG", path, upload(img["truncated"], **fields), frozenset({422})),
        Case("PNG header claiming 65535^2", path, upload(img["png65535"], **fields), frozenset({413})),
        Case("JPEG header claiming 65535^2", path, upload(img["jpeg65535"], **fields), frozenset({413})),
        Case("decompression bomb", path, upload(img["bomb"], **fields), frozenset({413})),
        Case("chunked oversize upload", path, chunked(FORM, FILE_HEAD, OVERSIZE), frozenset({413})),
        Case(
            "declared oversize upload",
            path,
            lambda: {"files": {"image": ("a.png", b"\x00" * OVERSIZE)}, "data": fields},
            frozenset({413}),
        ),
        Case("multipart without the image", path, lambda: {"data": {**fields, "x": "1"}}, frozenset({422})),
        Case(
            "image as a plain field",
            path,
            lambda: {"data": {**fields, "image": "not a file"}},
            frozenset({422}),
        ),
        Case(
            "broken multipart boundary",
            path,
            lambda: {"content": b"--other\r\ngarbage", "headers": {"content-type": FORM}},
            frozenset({400, 422}),
        ),
        Case(
            "multipart without boundary",
            path,
            lambda: {"content": b"x" * 100, "headers": {"content-type": "multipart/form-data"}},
            frozenset({400, 422}),
        ),
        Case("2000 form fields", path, many_fields(2000), frozenset({400, 413, 422})),
        Case("JSON to an upload route", path, lambda: {"json": {"image": "x"}}, frozenset({422})),
        *media_cases(path, **fields),
    ]


def big_image_cases(path: str, **fields: str) -> list[Case]:
    """Valid 100 MP pictures that decode to gigabytes if converted at full size."""
    return [
        Case(f"100 MP {kind} PNG", path, upload(images()[kind], **fields), frozenset({200}))
        for kind in ("gray16", "rgba", "bilevel")
    ]


def json_limit_cases(path: str) -> list[Case]:
    """JSON bodies past every JSON limit (64 KiB in the services, 1 MiB in the gateway); the id is one
    nobody stores, so a body wrongly accepted changes nothing the other cases rely on."""
    padding = "x" * (2 << 20)
    return [
        Case(
            "declared oversize JSON",
            path,
            lambda: {"json": {"image_id": 424242, "pad": padding}},
            frozenset({413}),
        ),
        Case(
            "chunked oversize JSON",
            path,
            chunked("application/json", b'{"image_id": 424242, "pad": "', 2 << 20),
            frozenset({413}),
        ),
        Case("invalid JSON", path, raw_json("{"), frozenset({422})),
        Case("JSON array", path, raw_json("[]"), frozenset({422})),
    ]


def id_cases(path: str) -> list[Case]:
    return [
        Case("image_id NaN", path, raw_json('{"image_id": NaN}'), frozenset({422})),
        Case("image_id 1e400", path, raw_json('{"image_id": 1e400}'), frozenset({422})),
        Case("image_id -1", path, raw_json('{"image_id": -1}'), frozenset({422})),
        Case("image_id 2^63", path, raw_json(f'{{"image_id": {2**63}}}'), frozenset({422})),
        Case("image_id text", path, raw_json('{"image_id": "1; drop table"}'), frozenset({422})),
    ]


def search_cases(by_id: str, by_image: str, threshold_ok: bool = True) -> list[Case]:
    small = images()["small"]
    return [
        Case("k = 10^9", by_id, raw_json('{"image_id": 1, "k": 1000000000}'), frozenset({422})),
        Case("k = 0", by_id, raw_json('{"image_id": 1, "k": 0}'), frozenset({422})),
        Case(
            "k and threshold",
            by_id,
            raw_json('{"image_id": 1, "k": 3, "distance_threshold": 5}'),
            frozenset({422}),
        ),
        Case(
            "threshold Infinity",
            by_id,
            raw_json('{"image_id": 1, "distance_threshold": Infinity}'),
            frozenset({422}),
        ),
        Case(
            "threshold 1e400",
            by_id,
            raw_json('{"image_id": 1, "distance_threshold": 1e400}'),
            frozenset({422}),
        ),
        Case(
            "threshold NaN", by_id, raw_json('{"image_id": 1, "distance_threshold": NaN}'), frozenset({422})
        ),
        Case("threshold -1", by_id, raw_json('{"image_id": 1, "distance_threshold": -1}'), frozenset({422})),
        Case(
            "threshold 1e308",
            by_id,
            raw_json('{"image_id": 1, "distance_threshold": 1e308}'),
            frozenset({200}),
        ),
        Case("unknown image id", by_id, raw_json('{"image_id": 987654321, "k": 3}'), frozenset({404})),
        Case("form threshold inf", by_image, upload(small, distance_threshold="inf"), frozenset({422})),
        Case("form k nan", by_image, upload(small, k="nan"), frozenset({422})),
        Case("form k 1e9", by_image, upload(small, k="1000000000"), frozenset({422})),
    ]


def service_cases(spec: ServiceDescriptor) -> list[Case]:
    if spec.store and spec.search:
        calc, delete = f"/calculate_{spec.store}", f"/delete_{spec.store}"
        by_id = f"/{spec.search}_get_similar_images_by_id"
        by_image = f"/{spec.search}_get_similar_images_by_image_buffer"
        return [
            *upload_cases(calc, image_id="70"),
            Case("image_id -1 in a form", calc, upload(images()["small"], image_id="-1"), frozenset({422})),
            Case("image_id nan in a form", calc, upload(images()["small"], image_id="nan"), frozenset({422})),
            *big_image_cases(by_image, k="3"),
            *id_cases(delete),
            *json_limit_cases(delete),
            *search_cases(by_id, by_image),
            Case("stored ids limit 10^9", "/stored_ids", raw_json('{"limit": 1000000000}'), frozenset({422})),
            Case("stored ids after NaN", "/stored_ids", raw_json('{"after": NaN}'), frozenset({422})),
            *(analysis_cases() if issubclass(spec.feature_class(), VectorFeature) else []),
        ]
    route = image_route(spec)
    assert route is not None
    cases = [*upload_cases(route), *big_image_cases(route)]
    if spec.store:  # ocr: stores text, searched by text
        cases += [
            *upload_cases(f"/calculate_{spec.store}", image_id="70")[:6],
            *id_cases(f"/delete_{spec.store}"),
            *json_limit_cases(f"/delete_{spec.store}"),
            Case(
                "k = 10^9",
                "/ocr_search_by_text",
                raw_json('{"text": "a", "k": 1000000000}'),
                frozenset({422}),
            ),
            Case("k NaN", "/ocr_search_by_text", raw_json('{"text": "a", "k": NaN}'), frozenset({422})),
            Case(
                "text of 5000 chars",
                "/ocr_search_by_text",
                lambda: {"json": {"text": "a" * 5000}},
                frozenset({422}),
            ),
        ]
    return cases


def analysis_cases() -> list[Case]:
    """The collection-analysis routes every vector service offers (the gateway's explore layer)."""
    bad = frozenset({422})
    moments, pairs, distances = "/analysis/moments", "/analysis/pairs", "/analysis/distances"
    return [
        Case("analysis granularity NaN", moments, raw_json('{"granularity": NaN}'), bad),
        Case("analysis eps Infinity", moments, raw_json('{"method": "density", "eps": Infinity}'), bad),
        Case("analysis min_samples 10^9", moments, raw_json('{"min_samples": 1000000000}'), bad),
        Case("analysis pairs threshold 1e400", pairs, raw_json('{"distance_threshold": 1e400}'), bad),
        Case("analysis pairs threshold NaN", pairs, raw_json('{"distance_threshold": NaN}'), bad),
        Case(
            "analysis pairs per image 10^9",
            pairs,
            raw_json('{"distance_threshold": 1, "max_per_image": 1e9}'),
            bad,
        ),
        Case("distances of a negative id", distances, raw_json('{"pairs": [[-1, 1]]}'), bad),
        Case("distances of id 2^63", distances, raw_json(f'{{"pairs": [[1, {2**63}]]}}'), bad),
        Case("distances of a half pair", distances, raw_json('{"pairs": [[1]]}'), bad),
        Case("10,001 distance pairs", distances, lambda: {"json": {"pairs": [[1, 2]] * 10_001}}, bad),
    ]


def gateway_cases() -> list[Case]:
    img = images()
    calc = "/calculate_all_image_features"
    return [
        *upload_cases(calc, image_id="71"),
        *upload_cases("/reverse_search", find_duplicate="1")[:6],
        *upload_cases("/reverse_search", find_duplicate="0")[:6],
        *media_cases("/reverse_search", find_duplicate="1"),
        Case("100 MP 16-bit PNG, normal search", "/reverse_search", upload(img["gray16"]), frozenset({200})),
        Case(
            "100 MP 1-bit PNG, duplicate search",
            "/reverse_search",
            upload(img["bilevel"], find_duplicate="1"),
            frozenset({200}),
        ),
        *id_cases("/delete_all_image_features"),
        *json_limit_cases("/delete_all_image_features"),
        Case("catalog ids NaN", "/catalog_status", raw_json('{"image_ids": [NaN]}'), frozenset({422})),
        Case("catalog ids 1e400", "/catalog_status", raw_json('{"image_ids": [1e400]}'), frozenset({422})),
        *search_cases("/phash_get_similar_images_by_id", "/phash_get_similar_images_by_image_buffer"),
        Case(
            "threshold Infinity through the proxy",
            "/color_get_similar_images_by_id",
            raw_json('{"image_id": 1, "distance_threshold": Infinity}'),
            frozenset({422}),
        ),
        *explore_and_page_cases(),
    ]


def explore_and_page_cases() -> list[Case]:
    """The explore routes, the page's routes and the OCR text by id through the gateway."""
    bad = frozenset({422})
    return [
        Case("moments granularity NaN", "/moments", raw_json('{"granularity": NaN}'), bad),
        Case("moments granularity 1e400", "/moments", raw_json('{"granularity": 1e400}'), bad),
        Case("moments granularity 0", "/moments", raw_json('{"granularity": 0}'), bad),
        Case("moments eps Infinity", "/moments", raw_json('{"method": "density", "eps": Infinity}'), bad),
        Case("moments unknown method", "/moments", raw_json('{"method": "astrology"}'), bad),
        Case("moments unknown source", "/moments", raw_json('{"source": "nowhere"}'), bad),
        Case("duplicate groups unknown kind", "/duplicate_groups", raw_json('{"kind": "twins"}'), bad),
        Case("map granularity nan", "/map?granularity=nan", dict, bad, method="GET"),
        Case("map unknown source", "/map?source=nowhere", dict, bad, method="GET"),
        Case("image info ids NaN", "/image_info", raw_json('{"image_ids": [NaN]}'), bad),
        Case(
            "image info 20,000 ids", "/image_info", lambda: {"json": {"image_ids": list(range(20_000))}}, bad
        ),
        Case("thumbnail id text", "/thumbnails/abc", dict, bad, method="GET"),
        Case("thumbnail id 2^64", f"/thumbnails/{2**64}", dict, bad, method="GET"),
        Case("thumbnail id -1", "/thumbnails/-1", dict, bad, method="GET"),
        Case("thumbnail of an unknown id", "/thumbnails/424242", upload(images()["small"]), frozenset({404})),
        Case("page ids count NaN", "/ui/allocate_ids", raw_json('{"count": NaN}'), bad),
        Case("page ids count 10^9", "/ui/allocate_ids", raw_json('{"count": 1000000000}'), bad),
        *id_cases("/get_stored_image_text"),
    ]


def valid_request(name: str) -> tuple[str, Callable[[], dict[str, Any]]]:
    """A cheap request each target must answer with 200."""
    small = images()["small"]
    spec = next((s for s in SPECS if s.name == name), None)
    if spec is None:  # the gateway
        return "/catalog_status", lambda: {"json": {"image_ids": [1]}}
    if spec.search:
        return f"/{spec.search}_get_similar_images_by_image_buffer", upload(small, k="1")
    if spec.store:
        return "/ocr_search_by_text", lambda: {"json": {"text": "hello", "k": 1}}
    route = image_route(spec)
    assert route is not None
    return route, upload(small)


def local_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("socket").getsockname()[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_server: TestServer) -> Iterator[HostileStack]:
    with hostile_stack(tmp_path_factory.mktemp("hostile"), pg_server) as running:
        reply = httpx.post(
            running.gateway.url + "/calculate_all_image_features",
            files={"image": ("one.jpg", encode(synthetic_image(1)))},
            data={"image_id": "1"},
            timeout=120,
        )
        stored = all(e["status"] in ("ok", "queued") for e in reply.json())  # queued: a deferred service
        assert reply.status_code == 200 and stored, reply.text
        yield running


def run_battery(url: str, target: str, cases: list[Case]) -> list[str]:
    """Each case, then the target's valid request on the same connection. Returns the failures."""
    problems = []
    valid_path, valid = valid_request(target)
    with httpx.Client(base_url=url, timeout=180) as client:
        port = local_port(client.get("/health"))
        for case in cases:
            try:
                reply = client.request(case.method, case.path, **case.request())
            except httpx.HTTPError as exc:
                problems.append(f"{target} {case.label}: no reply ({exc!r})")
                port = local_port(client.get("/health"))
                continue
            detail = reply.text[:200]
            if reply.status_code >= 500 or (case.expect and reply.status_code not in case.expect):
                problems.append(f"{target} {case.label}: {reply.status_code} {detail}")
            try:
                after = client.request("POST", valid_path, **valid())
            except httpx.HTTPError as exc:  # e.g. the server dropped the kept-alive connection
                problems.append(f"{target} after {case.label}: valid request failed ({exc!r})")
                port = local_port(client.get("/health"))
                continue
            if after.status_code != 200:
                problems.append(f"{target} after {case.label}: valid request got {after.status_code}")
            if local_port(after) != port:
                problems.append(f"{target} after {case.label}: the connection was not kept")
                port = local_port(after)
    return problems


@pytest.mark.parametrize("target", [s.name for s in SPECS] + ["gateway"])
def test_hostile_requests_never_fail_the_server_nor_the_connection(stack: HostileStack, target: str) -> None:
    cases = (
        gateway_cases() if target == "gateway" else service_cases(next(s for s in SPECS if s.name == target))
    )
    assert len(cases) >= 15  # 26 (captioner, tagger) to 92 (gateway) per target
    problems = run_battery(stack.all()[target].url, target, cases)
    down = [
        name
        for name, proc in stack.all().items()
        if httpx.get(proc.url + "/health", timeout=30).status_code != 200
    ]
    assert not problems, "\n".join(problems)
    assert not down, f"not answering /health: {down}"


def test_phash_peak_memory_on_a_100_mp_16_bit_png(tmp_path: Path) -> None:
    data = images()["gray16"]
    with running_service("services.phash", "AMBIENCE_PHASH_", tmp_path / "phash") as svc:
        assert svc.proc is not None
        reply = httpx.post(
            svc.url + "/phash_get_similar_images_by_image_buffer",
            files={"image": ("big.png", data)},
            data={"k": "1"},
            timeout=180,
        )
        assert reply.status_code == 200, reply.text
        peak = peak_rss_mb(svc.proc.pid)
    print(f"\nphash peak RSS answering a 100 MP 16-bit PNG ({len(data) >> 10} KiB): {peak:.0f} MB")
    assert peak < 600


def test_phash_peak_memory_on_media_bombs(tmp_path: Path) -> None:
    """Files of each new format that declare huge pictures or never end: refused within the budget."""
    with running_service("services.phash", "AMBIENCE_PHASH_", tmp_path / "phash") as svc:
        assert svc.proc is not None
        with httpx.Client(base_url=svc.url, timeout=180) as client:
            idle = current_rss_mb(svc.proc.pid)
            for label, data in media_files().items():
                reply = client.post(
                    "/phash_get_similar_images_by_image_buffer", files={"image": ("f", data)}, data={"k": "1"}
                )
                assert reply.status_code == MEDIA_STATUS[label], (label, reply.text)
        peak = peak_rss_mb(svc.proc.pid)
    print(f"\nphash peak RSS over the media bombs: {peak:.0f} MB (idle {idle:.0f} MB)")
    assert peak < idle + 200


def held_back_together(bodies: int) -> Callable[[bytes], Iterator[bytes]]:
    """Request bodies that are sent whole but for their last byte, then finished together: the
    requests reach the server at once however busy the machine is (each server takes a 100 MP
    decode's time to finish the first)."""
    barrier = threading.Barrier(bodies)

    def body(data: bytes) -> Iterator[bytes]:
        yield data[:-1]
        with contextlib.suppress(threading.BrokenBarrierError):  # a request answered early goes on
            barrier.wait(timeout=120)
        yield data[-1:]

    return body


def assert_a_burst_is_refused(url: str, fields: dict[str, str], budget: str, bursts: int = 5) -> None:
    """Three 100 MP uploads at once to ``url``: each answered or refused, at least one answered,
    and one refused with 503, Retry-After and a detail naming the ``budget``. Whether the three
    overlap in the server is up to the scheduler: a busy machine can serve a burst one after
    another (seen in CI), so up to ``bursts`` bursts are sent until one overlaps."""
    data = images()["gray16"]
    form = httpx.Request("POST", url, files={"image": ("big.png", data)}, data=fields)
    encoded = form.read()
    headers = {"content-type": form.headers["content-type"], "content-length": str(len(encoded))}
    seen: list[list[int]] = []
    for _ in range(bursts):
        body = held_back_together(3)

        def send(_: int, body: Callable[[bytes], Iterator[bytes]] = body) -> httpx.Response:
            return httpx.post(url, content=body(encoded), headers=headers, timeout=180)

        with ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(send, range(3)))
        statuses = sorted(r.status_code for r in replies)
        seen.append(statuses)
        assert statuses[0] == 200 and set(statuses) <= {200, 503}, seen
        refused = [r for r in replies if r.status_code == 503]
        if refused:
            assert refused[0].headers["retry-after"] == "1", refused[0].headers
            assert f"{budget} budget" in refused[0].json()["detail"]
            return
    raise AssertionError(f"no burst was refused: {seen}")


def test_the_decode_budget_answers_503_with_retry_after(tmp_path: Path) -> None:
    """Huge decodes at once on a budget that holds one: the others are refused with Retry-After."""
    env = {"AMBIENCE_PHASH_DECODE_BUDGET_MB": "300"}
    with running_service("services.phash", "AMBIENCE_PHASH_", tmp_path / "phash", extra_env=env) as svc:
        assert_a_burst_is_refused(svc.url + "/phash_get_similar_images_by_image_buffer", {"k": "1"}, "decode")


def test_the_gateway_bounds_uploads_in_flight(tmp_path: Path, pg_server: TestServer) -> None:
    """100 MP queries at once through a gateway whose in-flight budget holds one: the others get 503
    with Retry-After instead of piling up."""
    budget = {"AMBIENCE_GATEWAY_MAX_INFLIGHT_BYTES": str(len(images()["gray16"]) + 1000)}
    stack = start_stack(tmp_path, pg_server, ["phash"], gateway_env=budget)
    try:
        assert_a_burst_is_refused(stack.url + "/reverse_search", {"find_duplicate": "1"}, "upload")
    finally:
        stack.stop()

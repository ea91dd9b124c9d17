"""The shared photo folders and reading them. Tests that need them skip when they are absent."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path(os.environ.get("AMBIENCE_TEST_PHOTOS", REPO.parent / "shared" / "photos"))
PHOTOS_FULL = Path(os.environ.get("AMBIENCE_TEST_PHOTOS_FULL", REPO.parent / "shared" / "photos-full"))


def photo_paths(folder: Path = PHOTOS, limit: int | None = None) -> list[Path]:
    if not folder.is_dir():
        return []
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    return paths[:limit] if limit else paths


def load_rgb(path: Path, max_side: int | None = None) -> Image.Image:
    """The photo upright (EXIF orientation applied), RGB, shrunk to fit ``max_side`` if given."""
    img = Image.open(path)
    img = ImageOps.exif_transpose(img) or img
    img = img.convert("RGB")
    if max_side:
        img.thumbnail((max_side, max_side))
    return img


def same_source_groups(paths: list[Path]) -> list[set[int]]:
    """For each photo, the indices of the photos whose files are byte-identical to it (itself
    included). The one rule by which the recall test and bench count a rank-1 hit: the photo folder
    holds copies under two names (Victor_Forgacs.jpg == Viktor_Forgacs.jpg), and returning either
    is finding the source. Recoloured or re-encoded versions of a shot are *different* photos."""
    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]
    return [{j for j, other in enumerate(digests) if other == digest} for digest in digests]

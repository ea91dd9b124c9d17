"""Which image of a duplicate group to keep."""

from __future__ import annotations

from typing import Any


def keeper_rank(info: dict[str, Any], image_id: int) -> tuple[int, int, int]:
    """Largest pixel count, then largest file; the smallest id breaks ties (kept stable)."""
    pixels = (info.get("width") or 0) * (info.get("height") or 0)
    return pixels, info.get("bytes") or 0, -image_id

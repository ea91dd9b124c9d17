"""Which image of a duplicate group to keep, and why: an ordered list of rules, each a comparison of
two images' facts, the first rule that tells the best two apart names the reason.

What people do when they clean duplicates by hand (and what dupeGuru's ordered criteria and
Immich's suggestion encode): keep the one in the folder they trust, then the most pixels, the best
format (the camera's RAW over the phone's HEIC over a JPEG export), the largest file, the one with
the most metadata. A rule list is configured (``KEEPER_RULES``, per request ``keeper_rules``); a
stack's cover has its own (``STACK_COVER_RULES``: the format first, then the sharpest frame).

Rules (larger is better in every key; an unknown fact ranks below every known one):

- ``reference``: the image's file lies in a reference folder (earlier folders first), see
  :func:`reference_folder`;
- ``resolution``: most pixels;
- ``file_size``: largest file;
- ``format``: earliest in the format priority (``RAW`` stands for every camera RAW format, ``HEIC``
  for HEIC and HEIF; others by their name; formats not listed rank last, alike);
- ``capture_time``: has a capture time;
- ``exif``: most EXIF facts recorded (capture time, exposure time, its fraction of a second, GPS);
- ``sharpness``: the larger variance of the Laplacian of the thumbnail (gateway/duplicates/sharpness.py);
- ``oldest`` / ``newest``: earliest / latest capture time.

Ties after every rule go to the smallest image id (stable). Plain Python over the facts dicts of
gateway/image_facts.py (plus ``sharpness``); no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

KeeperRule = Literal[
    "reference", "resolution", "file_size", "format", "capture_time", "exif", "sharpness", "oldest", "newest"
]
RULES: tuple[str, ...] = KeeperRule.__args__  # type: ignore[attr-defined]

DEFAULT_KEEPER_RULES: list[str] = [
    "reference",
    "resolution",
    "format",
    "file_size",
    "exif",
    "capture_time",
    "oldest",
]
DEFAULT_COVER_RULES: list[str] = ["reference", "format", "sharpness", "resolution", "file_size", "exif"]
DEFAULT_FORMAT_PRIORITY: list[str] = ["RAW", "HEIC", "JPEG"]

#: Formats that are a camera's RAW (the kit's names: services/common/media/formats.py).
RAW_FORMATS = frozenset({"DNG", "CR2", "CR3", "NEF", "ARW", "ORF", "RAF", "RW2", "PEF", "SRW", "RAW"})
#: Format names that stand for a family in the priority list.
FORMAT_FAMILIES = {"HEIF": "HEIC", "JPG": "JPEG", "TIF": "TIFF", **{name: "RAW" for name in RAW_FORMATS}}

_SEPARATORS = re.compile(r"[\\/]+")


def format_family(name: str | None) -> str | None:
    """The priority-list name of a recorded format: RAW for any camera RAW, HEIC for HEIF too."""
    if not name:
        return None
    upper = name.upper()
    return FORMAT_FAMILIES.get(upper, upper)


def folder_parts(path: str) -> tuple[str, ...]:
    """The folder components of a path as a client sent it (either separator, case folded)."""
    return tuple(p.casefold() for p in _SEPARATORS.split(path.strip()) if p and p != ".")


def reference_folder(file_name: str | None, folders: Sequence[tuple[str, ...]]) -> int | None:
    """The index of the first reference folder ``file_name`` lies in, or None.

    A reference folder is named by its path components (``"Originals"``, ``"Photos/2019"``) and
    matches a file when those components appear, in a row, among the folders of the file's path as
    the client sent it: ``ambience index ~/Pictures`` sends ``Originals/2019/a.jpg`` (the path
    inside the indexed folder), a gallery may send ``/home/me/Pictures/Originals/a.jpg``; both lie
    in ``Originals``. Case is ignored; ``MyOriginals`` is not ``Originals``."""
    if not file_name or not folders:
        return None
    folders_of_file = folder_parts(file_name)[:-1]
    for n, wanted in enumerate(folders):
        if not wanted:
            continue
        width = len(wanted)
        if any(folders_of_file[i : i + width] == wanted for i in range(len(folders_of_file) - width + 1)):
            return n
    return None


def exif_richness(info: dict[str, Any]) -> int:
    """How many of the EXIF facts the gateway records an image has."""
    return (
        (info.get("captured_at") is not None)
        + (info.get("exposed_at") is not None)
        + bool(info.get("exposure_subsecond"))
        + (info.get("gps_latitude") is not None and info.get("gps_longitude") is not None)
    )


def _timestamp(info: dict[str, Any]) -> float | None:
    when = info.get("captured_at")
    return when.timestamp() if isinstance(when, datetime) else None


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class Choice:
    """A group's keeper, the rule that chose it over the runner-up (None: every rule tied, the
    smallest id won) and why, in words."""

    keeper: int
    rule: str | None
    reason: str


@dataclass(frozen=True)
class KeeperRules:
    """An ordered rule list with what its rules need: the format priority and reference folders."""

    order: tuple[str, ...]
    format_priority: tuple[str, ...] = tuple(DEFAULT_FORMAT_PRIORITY)
    reference_folders: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, order: Iterable[str], format_priority: Iterable[str] = (), reference_folders: Iterable[str] = ()
    ) -> KeeperRules:
        rules = tuple(order)
        unknown = [r for r in rules if r not in RULES]
        if unknown:
            raise ValueError(f"unknown keeper rules {unknown}: choose from {list(RULES)}")
        folders = tuple(f for f in reference_folders if folder_parts(f))
        return cls(rules, tuple(f.upper() for f in format_priority), folders)

    @property
    def _folders(self) -> tuple[tuple[str, ...], ...]:
        return tuple(folder_parts(f) for f in self.reference_folders)

    def _format_rank(self, info: dict[str, Any]) -> int:
        name = (info.get("format") or "").upper()
        family = format_family(name)
        for n, wanted in enumerate(self.format_priority):
            if wanted in (name, family):
                return len(self.format_priority) - n
        return 0

    def key(self, rule: str, info: dict[str, Any]) -> float:
        """The image's value under ``rule``: larger is better; -inf where the fact is unknown."""
        if rule == "reference":
            found = reference_folder(info.get("file_name"), self._folders)
            return -math.inf if found is None else float(len(self.reference_folders) - found)
        if rule == "resolution":
            w, h = info.get("width"), info.get("height")
            return float(w * h) if w and h else -math.inf
        if rule == "file_size":
            size = info.get("bytes")
            return float(size) if size else -math.inf
        if rule == "format":
            return float(self._format_rank(info)) if info.get("format") else -math.inf
        if rule == "capture_time":
            return 1.0 if info.get("captured_at") is not None else -math.inf
        if rule == "exif":
            return float(exif_richness(info))
        if rule == "sharpness":
            value = info.get("sharpness")
            return float(value) if value is not None else -math.inf
        when = _timestamp(info)
        if when is None:
            return -math.inf
        return -when if rule == "oldest" else when

    def choose(self, members: Iterable[int], info: dict[int, dict[str, Any]]) -> Choice:
        """The keeper of ``members`` (facts per image in ``info``; missing facts are unknown): the
        images best under the first rule, of those the best under the next, and so on, the smallest
        id last. The runner-up is the image that lasted longest but the keeper, so the reason is the
        rule that dropped the last others."""
        left = sorted(members)
        if len(left) == 1:
            return Choice(left[0], None, "the only image")
        decided: tuple[str, int] | None = None
        for rule in self.order:
            values = {m: self.key(rule, info.get(m, {})) for m in left}
            best = max(values.values())
            kept = [m for m in left if values[m] == best]
            if len(kept) < len(left):
                dropped = [m for m in left if values[m] != best]
                decided = rule, max(dropped, key=lambda m: (values[m], -m))
                left = kept
            if len(left) == 1:
                break
        if len(left) > 1 or decided is None:
            return Choice(left[0], None, "tie: the smallest image id")
        rule, runner = decided
        return Choice(left[0], rule, self.describe(rule, info.get(left[0], {}), info.get(runner, {})))

    def describe(self, rule: str, mine: dict[str, Any], theirs: dict[str, Any]) -> str:
        """Why ``mine`` beat ``theirs`` under ``rule``, in words."""
        if rule == "reference":
            found = reference_folder(mine.get("file_name"), self._folders)
            return f"reference folder: {self.reference_folders[found] if found is not None else '?'}"
        if rule == "resolution":
            return f"resolution: {_pixels(mine)} over {_pixels(theirs)}"
        if rule == "file_size":
            return f"file size: {_size(mine.get('bytes') or 0)} over {_size(theirs.get('bytes') or 0)}"
        if rule == "format":
            return f"format: {mine.get('format') or 'unknown'} over {theirs.get('format') or 'unknown'}"
        if rule == "capture_time":
            return "capture time: known over unknown"
        if rule == "exif":
            return f"EXIF: {exif_richness(mine)} facts over {exif_richness(theirs)}"
        if rule == "sharpness":
            return f"sharpness: {_number(mine.get('sharpness'))} over {_number(theirs.get('sharpness'))}"
        return f"{rule}: {_when(mine)} over {_when(theirs)}"


def _pixels(info: dict[str, Any]) -> str:
    w, h = info.get("width"), info.get("height")
    return f"{w}×{h}" if w and h else "unknown"


def _number(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0f}"


def _when(info: dict[str, Any]) -> str:
    when = info.get("captured_at")
    return when.isoformat(sep=" ", timespec="seconds") if isinstance(when, datetime) else "unknown"

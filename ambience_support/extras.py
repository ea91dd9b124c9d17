"""What a container image built with some pyproject extras can import, reproduced without a network.

An image installs ``ambience[EXTRAS]`` into a fresh virtualenv; the test environment holds every
extra at once, so a service that imports a module of another extra would start here and fail in
its image. :func:`requirement_closure` reads the installed distributions' own metadata for every
distribution ``ambience[EXTRAS]`` brings in (markers and nested extras such as
``uvicorn[standard]`` included); :func:`image_site` lays out a folder of links to exactly those
distributions' files, plus the project's packages as the Dockerfile copies them. A process started
with ``python -S`` and that folder as its only path imports what the image would hold, and a
missing module fails the way it would there (``ModuleNotFoundError``, and ``find_spec`` answering
None to libraries that probe for optional ones).
"""

from __future__ import annotations

import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ambience_support.photos import REPO

PROJECT = "ambience"
#: What a virtualenv holds before anything is installed into it (Python 3.11's venv seeds both).
VENV_SEED = frozenset({"pip", "setuptools"})
#: The project's packages an image holds (deploy/Dockerfile copies these).
IMAGE_PACKAGES = ("services", "gateway", "ambience")


def requirement_closure(extras: list[str], project: str = PROJECT) -> set[str]:
    """Canonical names of the distributions ``project[extras]`` installs (itself included)."""
    wanted: dict[str, frozenset[str]] = {}
    todo = [(project, frozenset(extras))]
    while todo:
        name, asked = todo.pop()
        key = canonicalize_name(name)
        if key in wanted and asked <= wanted[key]:
            continue
        wanted[key] = wanted.get(key, frozenset()) | asked
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue  # a requirement of another platform; pip would not install it here either
        for text in requires:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *wanted[key]}):
                todo.append((req.name, frozenset(req.extras)))
    return set(wanted)


def site_owners() -> dict[str, set[str]]:
    """Each top-level entry of site-packages -> the distributions whose files it holds."""
    owners: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        for file in dist.files or []:
            if file.parts and file.parts[0] != "..":
                owners.setdefault(file.parts[0], set()).add(name)
    return owners


def refused_entries(allowed: set[str]) -> dict[str, str]:
    """Top-level site-packages entries an image with ``allowed`` lacks -> a distribution owning it."""
    allowed = allowed | VENV_SEED
    return {top: sorted(d)[0] for top, d in site_owners().items() if not d & allowed}


def image_site(extras: list[str], target: Path) -> Path:
    """``target`` filled with links to what an image built with ``extras`` holds: every
    site-packages entry but those owned only by other distributions, and the project's packages.
    Run ``python -S`` with ``PYTHONPATH=target`` (and a working directory without the repository)."""
    if target.is_dir():
        return target
    refused = refused_entries(requirement_closure(extras))
    building = target.with_name(target.name + ".part")
    building.mkdir(parents=True)
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if entry.name not in refused and not entry.name.endswith(".pth") and entry.name != "__pycache__":
            (building / entry.name).symlink_to(entry)
    for package in IMAGE_PACKAGES:
        (building / package).symlink_to(REPO / package)
    building.rename(target)
    return target

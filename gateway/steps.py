"""What a step that follows an add is (the worker that runs the steps is gateway/after_add.py):
the protocol each step implements and what it is given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class AddedImage:
    """What a step gets: the image's id, its upload (None for a step that does not read it; for a
    video, HEIC or AVIF the still the services got), the upload's file name, and the facts read from
    the upload's header with the add (as JSON: gateway/image_facts.py)."""

    image_id: int
    data: bytes | None
    file_name: str | None
    facts: dict[str, Any] | None = None


class StepFailed(Exception):
    """The step can never succeed for this image (its later steps go on without it)."""


class AfterAddStep(Protocol):
    """One kind of work that follows every add."""

    #: The step's name in the catalog, /catalog_status and /health.
    name: str
    #: Whether it reads the upload (the spool file is kept until it is done).
    uses_upload: bool
    #: Whether it waits until every service has stored the image (it searches by stored id).
    needs_stored: bool

    async def run(self, image: AddedImage) -> None:
        """Do the step; idempotent (a step cut short by a crash runs again). Raise StepFailed when
        it can never succeed for this image, anything else to be tried again later."""
        ...

    async def forget(self, image_id: int) -> None:
        """Undo what the step keeps for an image being deleted."""
        ...

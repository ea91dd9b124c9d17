"""``POST /people/rebuild``: the faces recorded here brought in line with the faces service, then
the full regrouping, in the background with its progress.

After ``ambience import`` (which writes the services' stores past the gateway) the faces service
holds faces the gateway never saw: the rebuild pages through ``/faces_descriptors``, records the
faces of every image it does not know (``/faces_of_image`` for their boxes; the crop cut from the
image's thumbnail when one is kept, there being no upload), forgets those the service no longer
holds, and regroups every face no decision holds (gateway/people/clustering.py ``regroup``): names,
merges, moved faces, rejections and hidden people survive it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from gateway import thumbnails
from gateway.people import queries, store
from gateway.people.clustering import PeopleGrouping
from gateway.people.crops import face_crops
from gateway.people.faces import NO_PERSON, Changes
from gateway.people.service import (
    FacesUnavailable,
    People,
    faces_of_image,
    new_faces,
    put_crops_of_recorded,
)
from gateway.people.store import NewFace

log = logging.getLogger("ambience.gateway")

#: Images asked per /faces_descriptors page, and faces of images recorded per transaction.
PAGE_IMAGES = 1000
IMAGES_PER_WRITE = 200
#: /faces_of_image calls at once.
FETCHES = 4


@dataclass
class Progress:
    #: listing (the faces service's faces), fetching (faces of images not recorded here),
    #: grouping (the full regrouping and its records)
    phase: str = "listing"
    done: int = 0
    total: int = 0


class PeopleRebuild:
    """One rebuild at a time per gateway: the first call starts it (202 with progress, as every
    call while it runs), the first call after it finished gets its result (or error)."""

    def __init__(self, people: People) -> None:
        self.people = people
        self.progress = Progress()
        self.task: asyncio.Task[dict[str, Any]] | None = None

    def running(self) -> dict[str, Any]:
        return {"status": "running", "progress": asdict(self.progress)}

    async def request(self) -> tuple[bool, dict[str, Any]]:
        """(finished, body): the result once done, else the progress (a new rebuild started when
        none was running)."""
        if self.task is None:
            health = await self.people.clients.health("faces")
            if not health.ok:
                raise FacesUnavailable(f"the faces service is not answering: {health.detail}")
            self.progress = Progress()
            self.task = asyncio.create_task(self.rebuild(), name="people-rebuild")
            return False, self.running()
        if not self.task.done():
            return False, self.running()
        task, self.task = self.task, None
        return True, task.result()

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def rebuild(self) -> dict[str, Any]:
        try:
            service_faces = await self.listing()
            recorded = await run_in_threadpool(queries.face_keys, self.people.db)
            stale = sorted({i for i, f in recorded - service_faces})
            service_images = {i for i, _ in service_faces}
            # images with a face not recorded, and those whose recorded faces differ from the service's
            missing = sorted({i for i, _ in service_faces - recorded} | (set(stale) & service_images))
            if stale:
                await run_in_threadpool(self.people.memory.write, lambda g: g.remove_images(stale))
            await self.fetch(missing)
            self.progress.phase = "grouping"
            changes = await run_in_threadpool(self.people.memory.write, PeopleGrouping.regroup)
            people = await run_in_threadpool(self.people.memory.read, count_people)
        except Exception:
            log.exception("people: the rebuild failed")
            raise
        result = {
            "faces": len(service_faces),
            "people": people,
            "images_added": len(missing),
            "images_forgotten": len(set(stale) - set(missing)),
            "faces_moved": len(changes.faces),
        }
        log.info("people: rebuilt: %s", result)
        return result

    async def listing(self) -> set[tuple[int, int]]:
        """Every face the faces service holds."""
        found: set[tuple[int, int]] = set()
        after: int | None = None
        while True:
            body = {"after": after, "limit": PAGE_IMAGES}
            result = await self.people.call_faces("/faces_descriptors", json=body)
            if not result.ok:
                raise FacesUnavailable(f"the faces service could not list its faces: {result.detail}")
            page = result.body
            found |= set(zip(page["image_ids"], page["faces"], strict=True))
            self.progress.done = len(found)
            after = page["next_after"]
            if after is None:
                return found

    async def fetch(self, image_ids: list[int]) -> None:
        """Record the faces of ``image_ids`` from the faces service, a batch per transaction."""
        self.progress.phase, self.progress.done, self.progress.total = "fetching", 0, len(image_ids)
        gate = asyncio.Semaphore(FETCHES)
        for start in range(0, len(image_ids), IMAGES_PER_WRITE):
            batch = image_ids[start : start + IMAGES_PER_WRITE]
            found = await asyncio.gather(*(self.faces_of(i, gate) for i in batch))
            faces = [f for fs, _ in found for f in fs]
            crops = {k: v for _, cs in found for k, v in cs.items()}
            if faces:
                await run_in_threadpool(self.record, faces, crops)
            self.progress.done += len(batch)

    async def faces_of(
        self, image_id: int, gate: asyncio.Semaphore
    ) -> tuple[list[NewFace], dict[tuple[int, int], bytes]]:
        async with gate:
            result = await faces_of_image(self.people, image_id)
        if result.status_code == 404:  # deleted since the listing
            return [], {}
        if not result.ok:
            raise FacesUnavailable(f"the faces service failed on image {image_id}: {result.detail}")
        faces = new_faces(image_id, result.body)
        size = (result.body["width"], result.body["height"])
        return faces, await run_in_threadpool(self.thumbnail_crops, image_id, size, faces)

    def thumbnail_crops(
        self, image_id: int, size: tuple[int, int], faces: list[NewFace]
    ) -> dict[tuple[int, int], bytes]:
        """Crops cut from the image's thumbnail (small, but the upload is gone)."""
        kept = thumbnails.get(self.people.db, image_id) if faces else None
        if kept is None:
            return {}
        with Image.open(BytesIO(kept.webp)) as img:
            picture = img.convert("RGB")
        made = face_crops(picture, size, [f.box for f in faces], self.people.settings.people_crop_size)
        return {f.key: webp for f, webp in zip(faces, made, strict=True)}

    def record(self, faces: list[NewFace], crops: dict[tuple[int, int], bytes]) -> None:
        """Record and place the faces not recorded yet (a step may have recorded some meanwhile)."""
        new: list[NewFace] = []

        def operation(grouping: PeopleGrouping) -> Changes:
            new[:] = [f for f in faces if not grouping.has_face(f.key)]
            if not new:
                return Changes()
            return grouping.add([f.key for f in new], np.stack([f.descriptor for f in new]))

        self.people.memory.write(operation, lambda cur, generation: store.insert_faces(cur, new, generation))
        if crops:
            self.people.db.run(lambda cur: put_crops_of_recorded(cur, crops))


def count_people(grouping: PeopleGrouping) -> int:
    return len(set(grouping.person.tolist()) - {NO_PERSON})

"""People in the gateway: what the routes and the add path use.

- the ``people`` step that follows every add (gateway/after_add.py): the image's faces from the
  faces service (after it stored the image), placed by the grouping's rule, recorded with a crop
  of each face cut from the upload; a deleted image's faces, crops and rejections forgotten;
- the decisions (name, hide, merge, move a face, "not this person", "not the same as"), each an
  operation of the grouping (gateway/people/clustering.py) written through
  gateway/people/memory.py, so every regrouping honours it;
- "is this X?": unnamed people whose faces lie near a named person's (:func:`suggestions`);
- who is in an uploaded picture (the faces service's per-face search, mapped to people);
- the retry pass over unassigned faces, in the background (:meth:`People.retry_loop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from gateway.people import queries, store
from gateway.people.clustering import PeopleGrouping
from gateway.people.crops import crops_from_upload
from gateway.people.faces import NO_PERSON, Changes, FaceKey, GroupingSettings, face_key_id
from gateway.people.memory import PeopleMemory
from gateway.people.store import NewFace
from gateway.proxy import CallResult, ServiceClients
from gateway.settings import GatewaySettings
from gateway.steps import AddedImage, StepFailed
from services.common.errors import DatabaseUnavailable
from services.common.images import DecodeLimits, ImageError
from services.common.postgres.database import Cursor, SqlRunner

log = logging.getLogger("ambience.gateway")

FACES = "faces"


class FacesUnavailable(Exception):
    """The faces service could not answer (HTTP 503 naming it)."""


class NotFound(Exception):
    """No such person or face (HTTP 404)."""


class FacesRefused(Exception):
    """The faces service refused the query picture (its 4xx, passed on)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code


def combine(first: Changes, second: Changes) -> Changes:
    """Two operations' changes as one (the second's records win)."""
    first.faces.update(second.faces)
    first.people.update(second.people)
    first.removed_people |= second.removed_people
    for person_id in second.people:
        first.removed_people.discard(person_id)
    first.removed_faces |= second.removed_faces
    added, removed = second.rejections_added, second.rejections_removed
    first.rejections_added = (first.rejections_added - removed) | added
    first.rejections_removed = (first.rejections_removed - added) | removed
    return first


def new_faces(image_id: int, body: dict[str, Any]) -> list[NewFace]:
    """The faces of a ``/faces_of_image`` reply (with descriptors) as records to write."""
    return [
        NewFace(image_id, int(f["face"]), tuple(f["box"]), float(f["score"]), np.asarray(vector, "f4"))
        for f in body["faces"]
        for vector in [f["descriptor"]]
    ]


async def faces_of_image(people: People, image_id: int) -> CallResult:
    return await people.call_faces("/faces_of_image", json={"image_id": image_id, "descriptors": True})


def current_id(grouping: PeopleGrouping, person_id: int) -> int:
    """The person an id stands for now (following merges); NotFound when there is none."""
    seen = set()
    while person_id not in seen:
        seen.add(person_id)
        person = grouping.people.get(person_id)
        if person is None:
            break
        if person.merged_into is None:
            return person_id
        person_id = person.merged_into
    raise NotFound(f"no person {person_id}")


def withdraw_told_apart(grouping: PeopleGrouping, first: int, second: int) -> Changes:
    """A merge is the later word on two people told apart before (``not_same_as``: every face of
    one rejects the other): those rejections go. A face that alone rejected the other person keeps
    its rejection, and the merge leaves it out (the clustering's ``merge``)."""
    changes = Changes()
    for one, other in ((first, second), (second, first)):
        keys = grouping.faces_of(one)
        if keys and all(other in grouping.rejected.get(face_key_id(*k), ()) for k in keys):
            for key in keys:
                changes = combine(changes, grouping.withdraw(key, other))
    return changes


def face_of(grouping: PeopleGrouping, key: FaceKey) -> FaceKey:
    if not grouping.has_face(key):
        raise NotFound(f"image {key[0]} has no face {key[1]} (or its faces are not recorded yet)")
    return key


def suggestions(grouping: PeopleGrouping, min_faces: int, max_distance: float) -> list[dict[str, Any]]:
    """For each unnamed, visible person with at least ``min_faces`` faces: the named, visible person
    whose mean descriptor is nearest to its own, when within ``max_distance`` and no face of it was
    told it is not that person. Mean descriptors of one person's groups lie closer than its faces."""
    rows = np.nonzero(grouping.person != NO_PERSON)[0]
    if not len(rows):
        return []
    owners = grouping.person[rows]
    vectors = grouping.descriptors_of(rows)
    ids, inverse, counts = np.unique(owners, return_inverse=True, return_counts=True)
    sums = np.zeros((len(ids), vectors.shape[1]), np.float64)
    np.add.at(sums, inverse, vectors)
    means = sums / counts[:, None]
    people = [grouping.people.get(int(p)) for p in ids]
    named = [i for i, p in enumerate(people) if p is not None and p.name and not p.hidden]
    if not named:
        return []
    out = []
    for i, person in enumerate(people):
        if person is None or person.name or person.hidden or counts[i] < min_faces:
            continue
        rejected: set[int] = set()
        for face_id in grouping.ids[rows[inverse == i]].tolist():
            rejected |= grouping.rejected.get(face_id, set())
        distances = np.linalg.norm(means[named] - means[i], axis=1)
        for j in np.argsort(distances):
            candidate = people[named[j]]
            assert candidate is not None
            if distances[j] > max_distance:
                break
            if candidate.id in rejected:
                continue
            out.append(
                {
                    "person_id": person.id,
                    "faces": int(counts[i]),
                    "suggestion": {
                        "person_id": candidate.id,
                        "name": candidate.name,
                        "distance": round(float(distances[j]), 4),
                    },
                }
            )
            break
    out.sort(key=lambda s: (-s["faces"], s["person_id"]))
    return out


class People:
    """People over the faces service and the catalog's database."""

    name = "people"
    uses_upload = True
    needs_stored = True

    def __init__(
        self, settings: GatewaySettings, clients: ServiceClients, db: SqlRunner, limits: DecodeLimits
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.db = db
        self.limits = limits
        self.grouping_settings = GroupingSettings(settings.people_max_distance, settings.people_min_faces)
        self.memory = PeopleMemory(db, self.grouping_settings)
        self._retry_task: asyncio.Task[None] | None = None

    # -- the faces service ----------------------------------------------------------------------------

    async def call_faces(self, path: str, **kwargs: Any) -> CallResult:
        result = await self.clients.call(FACES, path, **kwargs)
        if result.outcome == "unavailable" or (result.status_code or 0) >= 500 or result.status_code is None:
            raise FacesUnavailable(f"the faces service could not answer {path}: {result.detail}")
        return result

    # -- the step that follows an add -------------------------------------------------------------------

    async def run(self, image: AddedImage) -> None:
        try:
            result = await faces_of_image(self, image.image_id)
        except FacesUnavailable as exc:
            raise RuntimeError(str(exc)) from exc  # tried again later
        if result.status_code == 404:
            raise StepFailed(f"the faces service does not hold image {image.image_id}")
        if not result.ok:
            raise RuntimeError(f"faces: {result.detail}")
        body = result.body
        faces = new_faces(image.image_id, body)
        if not faces:
            return
        crops: dict[FaceKey, bytes] = {}
        if image.data is not None:
            boxes = [f.box for f in faces]
            size = (int(body["width"]), int(body["height"]))
            try:
                made = await run_in_threadpool(
                    crops_from_upload, image.data, size, boxes, self.settings.people_crop_size, self.limits
                )
                crops = {f.key: webp for f, webp in zip(faces, made, strict=True)}
            except ImageError as exc:
                if exc.status == 503:
                    raise  # the decode budget is full: tried again later
                log.warning("image %d: no face crops: %s", image.image_id, exc.message)
        await run_in_threadpool(self.add_faces, faces, crops)

    def add_faces(self, faces: list[NewFace], crops: dict[FaceKey, bytes]) -> Changes:
        """Record new faces and place them (nothing when they are recorded already: a step run
        again, or faces a rebuild took from the faces service); keep their crops."""
        keys = [f.key for f in faces]

        def operation(grouping: PeopleGrouping) -> Changes:
            if any(grouping.has_face(k) for k in keys):
                return Changes()
            return grouping.add(keys, np.stack([f.descriptor for f in faces]))

        changes = self.memory.write(operation, lambda cur, gen: store.insert_faces(cur, faces, gen))
        if crops:
            self.db.run(lambda cur: put_crops_of_recorded(cur, crops))
        return changes

    async def forget(self, image_id: int) -> None:
        await run_in_threadpool(self.memory.write, lambda g: g.remove_images([image_id]))

    # -- decisions --------------------------------------------------------------------------------------

    def decide(self, person_id: int, body: dict[str, Any]) -> int:
        """``name``, ``hidden``, ``merge_into`` or ``not_same_as`` of a person; returns the person
        it is now (the target of a merge)."""
        result: dict[str, int] = {}

        def operation(grouping: PeopleGrouping) -> Changes:
            person = current_id(grouping, person_id)
            changes = Changes()
            if "name" in body:
                name = body["name"].strip() if body["name"] else None
                changes = combine(changes, grouping.rename(person, name or None))
            if "hidden" in body:
                changes = combine(changes, grouping.hide(person, bool(body["hidden"])))
            if body.get("not_same_as") is not None:
                other = current_id(grouping, int(body["not_same_as"]))
                if other == person:
                    raise ValueError("a person cannot be told apart from itself")
                for key in grouping.faces_of(person):
                    changes = combine(changes, grouping.reject(key, other))
            if body.get("merge_into") is not None:
                target = current_id(grouping, int(body["merge_into"]))
                if target == person:
                    raise ValueError(f"person {person_id} is person {target} already")
                changes = combine(changes, withdraw_told_apart(grouping, person, target))
                changes = combine(changes, grouping.merge(person, target))
                person = target
            result["person"] = person
            return changes

        self.memory.write(operation)
        return result["person"]

    def face_decision(self, key: FaceKey, body: dict[str, Any]) -> dict[str, Any]:
        """Move a face to a person (``person_id``), or to a new one (``new_person``, optionally with
        a ``name``), or tell it is not a person (``not_person``). Returns the face's person now."""

        def operation(grouping: PeopleGrouping) -> Changes:
            face_of(grouping, key)
            if body.get("not_person") is not None:
                return grouping.reject(key, current_id(grouping, int(body["not_person"])))
            if body.get("new_person"):
                person, changes = grouping.new_person(body.get("name") or None)
                return combine(changes, grouping.move(key, person))
            return grouping.move(key, current_id(grouping, int(body["person_id"])))

        self.memory.write(operation)
        person = self.memory.read(lambda g: g.person_of(key))
        return {"image_id": key[0], "face": key[1], "person_id": person}

    def image_info(self, image_ids: list[int]) -> dict[int, dict[str, Any]]:
        """``faces`` of each image for /image_info (empty for an image without a face)."""
        found = queries.faces_of_images(self.db, image_ids)
        return {i: {"faces": found.get(i, [])} for i in image_ids}

    def suggest(self) -> list[dict[str, Any]]:
        s = self.settings
        return self.memory.read(lambda g: suggestions(g, s.people_min_faces, s.people_suggest_distance))

    # -- who is in a picture --------------------------------------------------------------------------

    async def search(self, data: bytes) -> dict[str, Any]:
        """Each face of the picture with the people and images it matches (faces within
        ``PEOPLE_SEARCH_DISTANCE``; hidden people and their faces left out)."""
        result = await self.call_faces(
            "/faces_search_faces_by_image_buffer",
            files={"image": ("query", data, "application/octet-stream")},
            data={"distance_threshold": str(self.settings.people_search_distance)},
        )
        if not result.ok:
            raise FacesRefused(result.status_code or 422, result.detail or "refused")
        body = result.body
        keys = sorted({(m["image_id"], m["face"]) for f in body["faces"] for m in f["matches"]})
        owners = await run_in_threadpool(queries.people_of_faces, self.db, keys)
        hidden = await run_in_threadpool(queries.hidden_faces, self.db, keys)
        faces = []
        for face in body["faces"]:
            people: dict[int, dict[str, Any]] = {}
            images: dict[int, float] = {}
            for match in face["matches"]:
                key = (match["image_id"], match["face"])
                if key in hidden:
                    continue
                distance = round(float(match["distance"]), 4)
                images[key[0]] = min(images.get(key[0], distance), distance)
                if key in owners:
                    person_id, name = owners[key]
                    entry = people.setdefault(
                        person_id, {"person_id": person_id, "name": name, "distance": distance, "matches": 0}
                    )
                    entry["distance"] = min(entry["distance"], distance)
                    entry["matches"] += 1
            faces.append(
                {
                    "face": face["face"],
                    "box": face["box"],
                    "people": sorted(people.values(), key=lambda p: (p["distance"], p["person_id"])),
                    "images": [
                        {"image_id": i, "distance": d}
                        for i, d in sorted(images.items(), key=lambda x: (x[1], x[0]))
                    ],
                }
            )
        return {"width": body["width"], "height": body["height"], "faces": faces}

    # -- the retry pass -------------------------------------------------------------------------------

    def retry_pass(self) -> Changes | None:
        """Unassigned faces placed again, when anything changed since the last pass (of any
        replica); None when nothing had."""
        state = self.memory.state()
        if state.generation == state.retried_at:
            return None
        return self.memory.write(lambda g: g.retry_unassigned(), retry_pass=True)

    async def retry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.people_retry_interval_s)
            try:
                changes = await run_in_threadpool(self.retry_pass)
                if changes:
                    log.info("people: the retry pass placed %d faces", len(changes.faces))
            except DatabaseUnavailable as exc:
                log.warning("people: no retry pass: %s", exc)
            except Exception:
                log.exception("people: the retry pass failed")

    async def start(self) -> None:
        self._retry_task = asyncio.create_task(self.retry_loop(), name="people-retry")

    async def stop(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
            self._retry_task = None


def put_crops_of_recorded(cur: Cursor, crops: dict[FaceKey, bytes]) -> None:
    """The crops of faces that are recorded (an image deleted meanwhile keeps none)."""
    images = sorted({k[0] for k in crops})
    cur.execute("SELECT image_id, face_index FROM people_faces WHERE image_id = ANY(%s)", (images,))
    recorded = {(int(i), int(f)) for i, f in cur.fetchall()}
    store.put_crops(cur, {k: v for k, v in crops.items() if k in recorded})

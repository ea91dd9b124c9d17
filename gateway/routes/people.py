"""``/people``, a person's images, cover and decisions, face crops and decisions, the images of
several people, ``/search_by_face`` through :class:`~gateway.people.service.People` and the
queries of gateway/people/queries.py. Without the faces service (not in AMBIENCE_GATEWAY_SERVICES)
every route answers 503 naming it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, File, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from gateway.people import queries
from gateway.people.queries import Crop
from gateway.people.rebuild import PeopleRebuild
from gateway.people.service import FacesRefused, FacesUnavailable, NotFound, People
from gateway.routes.uploads import for_services, held_image
from services.common.images import DecodeLimits
from services.common.limits import MemoryBudget
from services.common.schemas import ID_MAX

T = TypeVar("T")
MAX_PAGE = 1000
PersonId = Annotated[int, Field(ge=1, lt=ID_MAX)]


class PersonDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=200, description="The person's name (null or empty: none)")
    hidden: bool | None = Field(None, description="Hidden: listed by /people only with ?hidden=1")
    merge_into: PersonId | None = Field(None, description="This person is that one: merged into it")
    not_same_as: PersonId | None = Field(
        None, description='"Is this X?" - no: no face of this person is X (never merged with X)'
    )

    @model_validator(mode="after")
    def _something(self) -> PersonDecision:
        if not self.model_fields_set:
            raise ValueError("give name, hidden, merge_into or not_same_as")
        return self


class FaceDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person_id: PersonId | None = Field(None, description="This face is this person (pinned there)")
    not_person: PersonId | None = Field(None, description="This face is not this person")
    new_person: bool = Field(False, description="This face is somebody new (a person of its own)")
    name: str | None = Field(None, max_length=200, description="With new_person: the new person's name")

    @model_validator(mode="after")
    def _one(self) -> FaceDecision:
        given = [self.person_id is not None, self.not_person is not None, self.new_person]
        if sum(given) != 1:
            raise ValueError("give exactly one of person_id, not_person or new_person")
        return self


def webp(found: Crop | None, request: Request, what: str, cache: str) -> Response:
    if found is None:
        raise HTTPException(404, f"no crop kept for {what}")
    headers = {"ETag": f'"{found.etag}"', "Cache-Control": cache}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return Response(found.webp, media_type="image/webp", headers=headers)


def add_routes(
    app: FastAPI,
    people: People | None,
    rebuild: PeopleRebuild | None,
    max_upload_bytes: int,
    inflight: MemoryBudget,
    limits: DecodeLimits,
) -> None:
    def need() -> People:
        if people is None:
            raise HTTPException(
                503, "people need the faces service, which is not enabled here (AMBIENCE_GATEWAY_SERVICES)"
            )
        return people

    async def decided(work: Callable[[], T]) -> T:
        try:
            return await run_in_threadpool(work)
        except (NotFound, KeyError) as exc:
            raise HTTPException(404, str(exc.args[0]) if exc.args else "not found") from exc
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.get("/people", tags=["people"])
    async def list_people(
        hidden: Annotated[bool, Query(description="1: hidden people too (flagged)")] = False,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        after: Annotated[str | None, Query(description="`next` of the previous page")] = None,
    ) -> dict[str, Any]:
        """People with faces, most faces first: ``{"people": [{"person_id", "name", "hidden",
        "faces", "images", "cover": {"image_id", "face", "box"}}], "next"}`` (``next``: pass as
        ``after`` for the next page; null on the last)."""
        db = need().db
        cursor = None
        if after is not None:
            try:
                faces, person_id = (int(v) for v in after.split("."))
            except ValueError as exc:
                raise HTTPException(422, f"after must be a page's `next`, not {after!r}") from exc
            cursor = (faces, person_id)
        return await run_in_threadpool(queries.list_people, db, hidden, limit, cursor)

    @app.post("/people/rebuild", tags=["people"])
    async def rebuild_people() -> Any:
        """The faces recorded here brought in line with the faces service (after ``ambience
        import``) and every face no decision holds grouped again: 202 ``{"status": "running",
        "progress": {"phase", "done", "total"}}`` while it runs, then its result once."""
        need()
        assert rebuild is not None
        try:
            finished, body = await rebuild.request()
        except FacesUnavailable as exc:
            raise HTTPException(503, str(exc)) from exc
        if not finished:
            return JSONResponse(body, status_code=202, headers={"Retry-After": "2"})
        return body

    @app.get("/people/suggestions", tags=["people"])
    async def suggestions() -> dict[str, Any]:
        """ "Is this X?": unnamed people (with PEOPLE_MIN_FACES faces or more) whose faces lie near a
        named person's: ``{"suggestions": [{"person_id", "faces", "suggestion": {"person_id",
        "name", "distance"}}]}``. Yes: merge into it; no: ``not_same_as``."""
        found = await run_in_threadpool(need().suggest)
        return {"suggestions": found}

    @app.get("/people/images", tags=["people"])
    async def images_with(
        with_: Annotated[str, Query(alias="with", description="Person ids, comma-separated: 1,2")],
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        after: Annotated[int | None, Query(ge=-1)] = None,
    ) -> dict[str, Any]:
        """The images holding every one of these people: ``{"people", "image_ids", "next"}``."""
        db = need().db
        try:
            ids = [int(v) for v in with_.split(",") if v.strip()]
        except ValueError as exc:
            raise HTTPException(422, f"with must be person ids separated by commas, not {with_!r}") from exc
        if not ids or len(ids) > 50:
            raise HTTPException(422, "with must name 1 to 50 people")
        try:
            return await run_in_threadpool(queries.images_with, db, ids, limit, after)
        except KeyError as exc:
            raise HTTPException(404, f"no person {exc.args[0]}") from exc

    @app.get("/people/faces/{image_id}/{index}", tags=["people"], response_class=Response)
    async def face_crop(image_id: int, index: int, request: Request) -> Response:
        """The crop of one face (WebP, PEOPLE_CROP_SIZE px)."""
        found = await run_in_threadpool(queries.crop, need().db, image_id, index)
        return webp(found, request, f"face {index} of image {image_id}", "private, max-age=86400")

    @app.post("/people/faces/{image_id}/{index}", tags=["people"])
    async def face_decision(image_id: int, index: int, body: FaceDecision) -> dict[str, Any]:
        """This face is ``person_id`` (pinned there: no regrouping moves it), is not ``not_person``
        (it never joins that person again), or is somebody new (``new_person``, with a ``name``).
        Returns ``{"image_id", "face", "person_id"}`` (its person now)."""
        p = need()
        return await decided(lambda: p.face_decision((image_id, index), body.model_dump(exclude_unset=True)))

    @app.get("/people/{person_id}", tags=["people"])
    async def person(person_id: int) -> dict[str, Any]:
        """One person (a merged id answers for the person it was merged into)."""
        found = await run_in_threadpool(queries.person, need().db, person_id)
        if found is None:
            raise HTTPException(404, f"no person {person_id}")
        return found

    @app.get("/people/{person_id}/images", tags=["people"])
    async def person_images(
        person_id: int,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        after: Annotated[int | None, Query(ge=-1)] = None,
    ) -> dict[str, Any]:
        """The images a person is in, by id, with the person's faces in each: ``{"person_id",
        "images": [{"image_id", "faces": [{"face", "box"}]}], "next"}``."""
        found = await run_in_threadpool(queries.person_images, need().db, person_id, limit, after)
        if found is None:
            raise HTTPException(404, f"no person {person_id}")
        return found

    @app.get("/people/{person_id}/cover", tags=["people"], response_class=Response)
    async def cover(person_id: int, request: Request) -> Response:
        """The crop of a person's cover face (WebP)."""
        found = await run_in_threadpool(queries.cover_crop, need().db, person_id)
        if found is False:
            raise HTTPException(404, f"no person {person_id}")
        return webp(found or None, request, f"person {person_id}", "no-cache")

    @app.post("/people/{person_id}", tags=["people"])
    async def person_decision(person_id: int, body: PersonDecision) -> dict[str, Any]:
        """Name (``name``), hide (``hidden``), merge into another (``merge_into``) or tell apart
        from another (``not_same_as``) a person; every regrouping keeps the decision. Returns the
        person (the one merged into after a merge)."""
        p = need()
        now = await decided(lambda: p.decide(person_id, body.model_dump(exclude_unset=True)))
        found = await run_in_threadpool(queries.person, p.db, now)
        assert found is not None
        return found

    @app.post("/search_by_face", tags=["people"])
    async def search_by_face(image: Annotated[UploadFile, File(description="A picture with faces")]) -> Any:
        """Each face found in the upload with the people and the images it matches: ``{"width",
        "height", "faces": [{"face", "box", "people": [{"person_id", "name", "distance",
        "matches"}], "images": [{"image_id", "distance"}]}]}``."""
        p = need()
        async with held_image(image, max_upload_bytes, inflight) as upload:
            data = await for_services(upload, limits) or upload
            try:
                return await p.search(data)
            except FacesUnavailable as exc:
                raise HTTPException(503, str(exc)) from exc
            except FacesRefused as exc:
                raise HTTPException(exc.status_code, str(exc)) from exc

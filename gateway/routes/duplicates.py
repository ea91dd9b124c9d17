"""``/duplicate_groups`` and what a person does with them (decisions, resolve) and
``/duplicate_groups/rebuild``, through :class:`~gateway.duplicates.service.DuplicateGroups`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel

from gateway.duplicates.decisions import DecisionConflict
from gateway.duplicates.resolve import Delete
from gateway.duplicates.service import DecisionBody, DuplicateGroups, GroupsBody, Kind, KindBody, ResolveBody
from gateway.routes.explore import answer


class DecisionId(BaseModel):
    id: int


def add_routes(app: FastAPI, duplicates: DuplicateGroups, delete: Delete) -> None:
    """``delete``: the reliable delete of one image everywhere (gateway/writer.py)."""

    @app.post("/duplicate_groups", tags=["explore"])
    async def duplicate_groups(body: GroupsBody) -> Any:
        """Groups of copies (the same picture), near shots, or stacks (``bursts``: a burst's frames,
        one shot as RAW+JPEG), paged: ``groups`` of ``{"id", "keeper", "keeper_rule",
        "keeper_reason", "size", "bytes_freed", "members"}`` (bursts add ``cover`` and ``stack``:
        burst | formats), members the keeper first with their ``distance`` to it (``direct``: false
        when only linked through other members) and facts; ``totals`` of every group (``groups``,
        ``images``, ``bytes_freed``), ``page``, ``pages``, ``next`` (the cursor of the next page),
        ``generation``. Without ``page_size`` every group is listed."""
        return await answer(lambda: duplicates.groups(body))

    @app.post("/duplicate_groups/rebuild", tags=["explore"])
    async def rebuild_duplicate_groups(body: KindBody) -> Any:
        """Recompute every link of ``kind`` from the services (after a bulk import). A copies rebuild
        with local_features enabled searches every stored image for crops in the background: 202
        ``{"status": "running", "kind", "progress": {"phase", "done", "total", "failed"}}`` until
        it has finished, then its result once (``crops`` says how far the crop search got); the
        next call starts a new rebuild. A bursts rebuild measures the sharpness of images without
        one first, in the background likewise."""
        return await answer(lambda: duplicates.rebuild(body.kind))

    @app.post("/duplicate_groups/decisions", tags=["explore"])
    async def decide(body: DecisionBody) -> dict[str, Any]:
        """Decide about images: ``not_duplicates`` (never in one group, directly or through others)
        or ``duplicates`` (one group), for ``kind`` or every kind. Kept in the catalog and applied to
        every later add, rebuild and replica. 409 when it contradicts a decision held (remove that
        one first); the same decision twice is recorded once."""
        try:
            found = await duplicates.decide(body)
        except DecisionConflict as exc:
            raise HTTPException(409, {"message": str(exc), "decisions": exc.decisions}) from exc
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return found.as_json()

    @app.get("/duplicate_groups/decisions", tags=["explore"])
    async def decisions(
        kind: Annotated[Kind | None, Query(description="those applying to this kind")] = None,
        decision: Annotated[str | None, Query(description="not_duplicates, duplicates or resolved")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[int | None, Query(description="ids below this one (the next page)")] = None,
    ) -> dict[str, Any]:
        """The decisions held, newest first (resolutions too, with what they removed)."""
        found = await duplicates.decisions_listed(kind, decision, limit, before)
        return {"decisions": [d.as_json() for d in found]}

    async def undo(decision_id: int) -> dict[str, Any]:
        found = await duplicates.undo(decision_id)
        if found is None:
            raise HTTPException(404, f"no decision {decision_id}")
        return {"removed": found.as_json()}

    @app.post("/duplicate_groups/decisions/remove", tags=["explore"])
    async def undo_decision(body: DecisionId) -> dict[str, Any]:
        """Undo a decision by its id: the groups are again what the links (and the other decisions)
        make them. A resolution undone shows its kept images again; what it deleted stays deleted."""
        return await undo(body.id)

    @app.delete("/duplicate_groups/decisions/{decision_id}", tags=["explore"])
    async def delete_decision(decision_id: int) -> dict[str, Any]:
        """As ``POST /duplicate_groups/decisions/remove``."""
        return await undo(decision_id)

    @app.post("/duplicate_groups/resolve", tags=["explore"])
    async def resolve(body: ResolveBody) -> dict[str, Any]:
        """Keep ``keep``, delete ``remove`` from every service (a service that is down gets the
        delete from the retry worker): ``removed`` per image (``deleted``, ``pending``, ``failed``
        and per service), ``inherit`` (what the kept images should take: the earliest
        ``captured_at``, ``gps`` where the group agrees, the removed ``file_names``), and the
        ``resolution`` recorded: a group of the kept images alone is not shown again."""
        try:
            return await duplicates.resolve(body, delete)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc

"""``/duplicate_groups`` and ``/duplicate_groups/rebuild`` through
:class:`~gateway.duplicates.service.DuplicateGroups`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from gateway.duplicates.service import DuplicateGroups, GroupsBody
from gateway.routes.explore import answer


def add_routes(app: FastAPI, duplicates: DuplicateGroups) -> None:
    @app.post("/duplicate_groups", tags=["explore"])
    async def duplicate_groups(body: GroupsBody) -> Any:
        """Groups of copies (the same picture) or of near shots: per group the ``keeper`` (most
        pixels, then largest file) and ``members`` with their ``distance`` to it (``direct``: false
        when only linked through other members; the distance is then the path length)."""
        return await answer(lambda: duplicates.groups(body.kind))

    @app.post("/duplicate_groups/rebuild", tags=["explore"])
    async def rebuild_duplicate_groups(body: GroupsBody) -> Any:
        """Recompute every link of ``kind`` from the services (after a bulk import). A copies rebuild
        with local_features enabled searches every stored image for crops in the background: 202
        ``{"status": "running", "kind", "progress": {"phase", "done", "total", "failed"}}`` until
        it has finished, then its result once (``crops`` says how far the crop search got); the
        next call starts a new rebuild."""
        return await answer(lambda: duplicates.rebuild(body.kind))

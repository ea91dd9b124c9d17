"""The duplicate groups of the collection, as the routes and the add path use them: described with
their keepers (``/duplicate_groups``), followed as images come and go (a writer listener: the
links of each added image recorded, a deleted image's dropped), rebuilt on demand
(``/duplicate_groups/rebuild``)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.duplicates.crops import AlignedCrops
from gateway.duplicates.follower import GroupFollower
from gateway.duplicates.groups import LinkGroups
from gateway.duplicates.keeper import keeper_rank
from gateway.duplicates.links import LINK_KINDS, LinkStore
from gateway.duplicates.policy import LinkPolicy
from gateway.duplicates.rebuild import Rebuilder
from gateway.image_facts import ImageFacts
from gateway.proxy import ServiceClients
from gateway.reverse_search import ReverseSearch
from gateway.settings import GatewaySettings
from gateway.sources import AnalysisSources, SourceUnavailable
from services.common.postgres.database import SqlRunner

log = logging.getLogger("ambience.gateway")

Kind = Literal["copies", "similar"]


class GroupsBody(BaseModel):
    kind: Kind = Field("copies", description="copies: the same picture; similar: near shots and bursts")


class DuplicateGroups:
    def __init__(
        self,
        follower: GroupFollower,
        policy: LinkPolicy,
        rebuilder: Rebuilder,
        sources: AnalysisSources,
        facts: ImageFacts,
        links: LinkStore,
    ) -> None:
        self.follower = follower
        self.policy = policy
        self.rebuilder = rebuilder
        self.sources = sources
        self.facts = facts
        self.links = links

    @classmethod
    def build(
        cls,
        settings: GatewaySettings,
        clients: ServiceClients,
        sources: AnalysisSources,
        reverse_search: ReverseSearch,
        facts: ImageFacts,
        links: LinkStore,
        thumbnails: SqlRunner,
    ) -> DuplicateGroups:
        """The groups as the gateway runs them, over the services ``sources`` knows enabled."""
        enabled = sources.enabled
        crops = AlignedCrops(settings, clients, enabled, thumbnails)
        policy = LinkPolicy(settings, clients, enabled, reverse_search, sources, facts, links, crops)
        rebuilder = Rebuilder(settings, clients, enabled, sources, policy, crops, links, facts)
        return cls(GroupFollower(links), policy, rebuilder, sources, facts, links)

    async def groups(self, kind: str) -> dict[str, Any]:
        """Every group of ``kind``, largest first: its keeper and its members with their distance
        to the keeper (``direct``: false when only linked through other members)."""
        async with self.follower.current(kind) as groups:
            return await self._describe(kind, groups)

    async def _describe(self, kind: str, groups: LinkGroups) -> dict[str, Any]:
        found = groups.groups()
        info = await run_in_threadpool(self.facts.info, sorted(m for g in found for m in g))
        out = []
        for members in found:
            keeper = max(members, key=lambda m: keeper_rank(info.get(m, {}), m))
            distances = groups.distances_from(keeper)
            ordered = sorted(members - {keeper}, key=lambda m: (distances[m][0], m))
            out.append(
                {
                    "keeper": keeper,
                    "size": len(members),
                    "members": [{"image_id": keeper, "distance": 0.0, "direct": True}]
                    + [
                        {"image_id": m, "distance": round(distances[m][0], 5), "direct": distances[m][1]}
                        for m in ordered
                    ],
                }
            )
        out.sort(key=lambda g: (-g["size"], g["keeper"]))
        return {"kind": kind, "groups": out}

    async def rebuild(self, kind: str) -> dict[str, Any]:
        return await self.rebuilder.rebuild(kind)

    async def stop(self) -> None:
        await self.rebuilder.stop()

    # -- the add path (a gateway.writer.WriteListener) ----------------------------------------

    async def image_added(self, image_id: int, data: bytes, file_name: str | None) -> None:
        """Link an added image into the groups of every kind. Never fails the add (the links can be
        rebuilt); problems are logged."""
        try:
            for kind in LINK_KINDS:
                if kind == "similar" and not self.sources.has_default():
                    continue  # no embedding service: nothing to call a near shot
                links = await self.policy.links_for(kind, image_id, data)
                # logged: every replica's groups (this one's too) take it in at their next request
                await run_in_threadpool(self.links.add, kind, image_id, links)
        except (SourceUnavailable, ValueError) as exc:
            log.warning("duplicate groups: image %d only partly linked: %s", image_id, exc)
        except Exception:
            log.exception("duplicate groups: linking image %d failed", image_id)

    async def image_deleted(self, image_id: int) -> None:
        try:
            await run_in_threadpool(self.links.forget, image_id)  # logged, as an add
        except Exception:
            log.exception("duplicate groups: forgetting image %d failed", image_id)

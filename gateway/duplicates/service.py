"""The duplicate groups of the collection, as the routes and the add path use them: described with
their keepers (``/duplicate_groups``), followed as images come and go (the steps that follow an
add: the links of each added image recorded, a deleted image's dropped), rebuilt on demand
(``/duplicate_groups/rebuild``)."""

from __future__ import annotations

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
from gateway.sources import AnalysisSources
from gateway.steps import AddedImage
from services.common.postgres.database import SqlRunner

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

    def steps(self) -> list[LinkStep]:
        """The steps that follow an add (gateway/after_add.py): the image linked into the groups
        of each kind, after its facts and thumbnail."""
        return [LinkStep(kind, self.policy, self.links) for kind in LINK_KINDS]


class LinkStep:
    """The ``copies`` or ``similar`` step that follows an add: the image's links of that kind,
    found by its stored id (no upload sent again) and recorded, logged for every replica's groups.
    The copies step also drops a deleted image's links."""

    uses_upload = False
    needs_stored = True

    def __init__(self, kind: str, policy: LinkPolicy, links: LinkStore) -> None:
        self.name = kind
        self.policy = policy
        self.links = links

    async def run(self, image: AddedImage) -> None:
        found = await self.policy.links_of(self.name, image.image_id)
        # logged: every replica's groups (this one's too) take it in at their next request
        await run_in_threadpool(self.links.add, self.name, image.image_id, found)

    async def forget(self, image_id: int) -> None:
        if self.name == LINK_KINDS[0]:  # the links of every kind go at once
            await run_in_threadpool(self.links.forget, image_id)  # logged, as an add

"""The duplicate groups of the collection, as the routes and the add path use them: paged with their
keepers and the reason for each (``/duplicate_groups``), followed as images come and go (the steps
that follow an add: the image's sharpness measured, its links of each kind recorded, a deleted
image's dropped), decided on by a person (``/duplicate_groups/decisions``), resolved
(``/duplicate_groups/resolve``), rebuilt on demand (``/duplicate_groups/rebuild``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.duplicates.bursts import BurstCandidates, BurstLinks
from gateway.duplicates.crops import AlignedCrops
from gateway.duplicates.decided import Decision
from gateway.duplicates.decisions import MAX_DECISION_IMAGES, PostgresDecisionStore
from gateway.duplicates.follower import GroupFollower
from gateway.duplicates.keeper import KeeperRule, KeeperRules
from gateway.duplicates.links import LINK_KINDS, PostgresLinkStore
from gateway.duplicates.pages import GroupPages, Summary, page_of
from gateway.duplicates.policy import LinkPolicy
from gateway.duplicates.rebuild import Rebuilder
from gateway.duplicates.resolve import MAX_RESOLVE_IMAGES, Delete, Resolver
from gateway.duplicates.sharpness import SharpnessStore
from gateway.image_facts import ImageFacts
from gateway.proxy import ServiceClients
from gateway.reverse_search import ReverseSearch
from gateway.settings import GatewaySettings
from gateway.sources import AnalysisSources
from gateway.steps import AddedImage, AfterAddStep
from services.common.postgres.database import SqlRunner

Kind = Literal["copies", "similar", "bursts"]
KIND_HELP = "copies: the same picture; similar: near shots; bursts: stacks (a burst's frames, RAW+JPEG)"


class KindBody(BaseModel):
    kind: Kind = Field("copies", description=KIND_HELP)


class GroupsBody(KindBody):
    page: int = Field(1, ge=1, description="page number, from 1 (with page_size)")
    page_size: int | None = Field(None, ge=1, le=1000, description="groups per page (default: every group)")
    order: Literal["size", "space"] = Field(
        "size", description="size: largest group first; space: most bytes freed by removing the others first"
    )
    after: str | None = Field(None, description="the `next` of the previous page: the page after it")
    keeper_rules: list[KeeperRule] | None = Field(
        None, description="keeper rules in order (default KEEPER_RULES, for bursts STACK_COVER_RULES)"
    )
    format_priority: list[str] | None = Field(
        None, description="for the format rule (default KEEPER_FORMAT_PRIORITY)"
    )
    reference_folders: list[str] | None = Field(
        None, description="for the reference rule (default KEEPER_REFERENCE_FOLDERS)"
    )


class DecisionBody(BaseModel):
    image_ids: list[int] = Field(min_length=2, max_length=MAX_DECISION_IMAGES)
    decision: Literal["not_duplicates", "duplicates"]
    kind: Kind | None = Field(None, description="the kind of groups it applies to (default: every kind)")


class ResolveBody(KindBody):
    keep: list[int] = Field(min_length=1, max_length=MAX_RESOLVE_IMAGES, description="images kept")
    remove: list[int] = Field(
        default_factory=list, max_length=MAX_RESOLVE_IMAGES, description="images deleted from every service"
    )


def with_sharpness(
    facts: ImageFacts, sharpness: SharpnessStore, image_ids: list[int]
) -> dict[int, dict[str, Any]]:
    """The recorded facts of images and their sharpness (what the keeper rules read)."""
    info = facts.info(image_ids)
    sharp = sharpness.of(image_ids)
    return {i: {**info.get(i, {}), "sharpness": sharp.get(i)} for i in image_ids}


class DuplicateGroups:
    def __init__(
        self,
        settings: GatewaySettings,
        follower: GroupFollower,
        policy: LinkPolicy,
        rebuilder: Rebuilder,
        pages: GroupPages,
        decisions: PostgresDecisionStore,
        resolver: Resolver,
        bursts: BurstLinks,
        sharpness: SharpnessStore,
        links: PostgresLinkStore,
    ) -> None:
        self.settings = settings
        self.follower = follower
        self.policy = policy
        self.rebuilder = rebuilder
        self.pages = pages
        self.decisions = decisions
        self.resolver = resolver
        self.bursts = bursts
        self.sharpness = sharpness
        self.links = links

    @classmethod
    def build(
        cls,
        settings: GatewaySettings,
        clients: ServiceClients,
        sources: AnalysisSources,
        reverse_search: ReverseSearch,
        facts: ImageFacts,
        links: PostgresLinkStore,
        db: SqlRunner,
    ) -> DuplicateGroups:
        """The groups as the gateway runs them, over the services ``sources`` knows enabled."""
        enabled = sources.enabled
        crops = AlignedCrops(settings, clients, enabled, db)
        policy = LinkPolicy(settings, clients, enabled, reverse_search, sources, facts, links, crops)
        sharpness = SharpnessStore(db)
        bursts = BurstLinks(settings, clients, enabled, BurstCandidates(db), links)
        rebuilder = Rebuilder(
            settings, clients, enabled, sources, policy, crops, links, facts, bursts, sharpness
        )
        decisions = PostgresDecisionStore(db, links)
        follower = GroupFollower(links, decisions)
        pages = GroupPages(lambda ids: with_sharpness(facts, sharpness, ids))
        follower.listen(pages.changed)
        resolver = Resolver(facts, decisions)
        return cls(
            settings, follower, policy, rebuilder, pages, decisions, resolver, bursts, sharpness, links
        )

    def rules(self, body: GroupsBody) -> KeeperRules:
        s = self.settings
        default = s.stack_cover_rules if body.kind == "bursts" else s.keeper_rules
        return KeeperRules.of(
            body.keeper_rules or default,
            body.format_priority or s.keeper_format_priority,
            s.keeper_reference_folders if body.reference_folders is None else body.reference_folders,
        )

    async def groups(self, body: GroupsBody | str) -> dict[str, Any]:
        """A page of the groups of a kind: per group its ``keeper`` and ``keeper_reason`` and its
        ``members`` with their distance to the keeper (``direct``: false when only linked through
        other members), with the totals of every group."""
        if isinstance(body, str):
            body = GroupsBody(kind=body)  # type: ignore[arg-type]
        rules = self.rules(body)
        async with self.follower.current(body.kind) as groups:
            generation = self.follower.generation(body.kind)
            view = await self.pages.view(body.kind, groups, generation, rules)
            chosen, paging = page_of(view, body.order, body.page, body.page_size, body.after)
            described = [
                self._group(body.kind, s, groups.distances_from(s.keeper, set(s.members))) for s in chosen
            ]
        return {
            "kind": body.kind,
            "generation": generation,
            "keeper_rules": list(rules.order),
            **paging,
            "groups": described,
        }

    def _group(self, kind: str, summary: Summary, distances: dict[int, tuple[float, bool]]) -> dict[str, Any]:
        keeper = summary.keeper
        ordered = sorted(summary.members - {keeper}, key=lambda m: (distances[m][0], m))
        members = [{"image_id": keeper, "distance": 0.0, "direct": True, **self._facts(keeper)}]
        members += [
            {
                "image_id": m,
                "distance": round(distances[m][0], 5),
                "direct": distances[m][1],
                **self._facts(m),
            }
            for m in ordered
        ]
        group = {
            "id": summary.group_id,
            "keeper": keeper,
            "keeper_rule": summary.rule,
            "keeper_reason": summary.reason,
            "size": len(summary.members),
            "bytes_freed": summary.bytes_freed,
            "members": members,
        }
        if kind == "bursts":
            group |= {"cover": keeper, "stack": summary.stack}
        return group

    def _facts(self, image: int) -> dict[str, Any]:
        info = self.pages.info(image)
        when = info.get("captured_at")
        sharp = info.get("sharpness")
        return {
            "file_name": info.get("file_name"),
            "format": info.get("format"),
            "width": info.get("width"),
            "height": info.get("height"),
            "bytes": info.get("bytes"),
            "captured_at": when.isoformat() if when is not None else None,
            "sharpness": round(sharp, 1) if sharp is not None else None,
        }

    # -- decisions and resolutions -----------------------------------------------------------------

    async def decide(self, body: DecisionBody) -> Decision:
        return await run_in_threadpool(self.decisions.add, body.decision, body.kind, body.image_ids)

    async def undo(self, decision_id: int) -> Decision | None:
        return await run_in_threadpool(self.decisions.remove, decision_id)

    async def decisions_listed(
        self, kind: str | None, decision: str | None, limit: int, before: int | None
    ) -> list[Decision]:
        return await run_in_threadpool(self.decisions.listed, kind, decision, limit, before)

    async def resolve(self, body: ResolveBody, delete: Delete) -> dict[str, Any]:
        return await self.resolver.resolve(body.kind, body.keep, body.remove, delete)

    # -- rebuilds and the add path ----------------------------------------------------------------

    async def rebuild(self, kind: str) -> dict[str, Any]:
        return await self.rebuilder.rebuild(kind)

    async def stop(self) -> None:
        await self.rebuilder.stop()

    def steps(self) -> list[AfterAddStep]:
        """The steps that follow an add (gateway/after_add.py), after its facts and thumbnail: the
        sharpness of the thumbnail, then the image linked into the groups of each kind (bursts
        last: a burst's frames may be known alike by their similar links)."""
        finders: dict[str, Callable[[int], Awaitable[list[tuple[int, float]]]]] = {
            "copies": lambda image_id: self.policy.links_of("copies", image_id),
            "similar": lambda image_id: self.policy.links_of("similar", image_id),
            "bursts": self.bursts.of,
        }
        return [self.sharpness, *(LinkStep(kind, finders[kind], self.links) for kind in LINK_KINDS)]


class LinkStep:
    """The ``copies``, ``similar`` or ``bursts`` step that follows an add: the image's links of that
    kind, found by its stored id and facts (no upload sent again) and recorded, logged for every
    replica's groups. The copies step also drops a deleted image's links."""

    uses_upload = False
    needs_stored = True

    def __init__(
        self, kind: str, find: Callable[[int], Awaitable[list[tuple[int, float]]]], links: PostgresLinkStore
    ) -> None:
        self.name = kind
        self.find = find
        self.links = links

    async def run(self, image: AddedImage) -> None:
        found = await self.find(image.image_id)
        # logged: every replica's groups (this one's too) take it in at their next request
        await run_in_threadpool(self.links.add, self.name, image.image_id, found)

    async def forget(self, image_id: int) -> None:
        if self.name == LINK_KINDS[0]:  # the links of every kind go at once
            await run_in_threadpool(self.links.forget, image_id)  # logged, as an add

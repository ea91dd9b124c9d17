"""The duplicate groups of gateway replicas that share one catalog, without services: what
tests/gateway drives to see how the groups in memory follow the catalog (each replica has its own
connection pool, as each gateway process does). Adds and deletes are recorded as the gateway's add
path records them: the ledger's begin_add and the links' add, begin_delete and the links' forget.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.catalog import Catalog
from gateway.duplicates import schema as duplicates_schema
from gateway.duplicates.links import LINK_CHANGES_KEPT, PostgresLinkStore
from gateway.duplicates.service import DuplicateGroups
from gateway.image_facts import ImageFacts
from gateway.proxy import ServiceClients
from gateway.reverse_search import ReverseSearch
from gateway.schema import COMPONENT, MIGRATIONS
from gateway.settings import GatewaySettings
from gateway.sources import AnalysisSources
from services.common.postgres.database import PostgresComponent, PostgresSettings


@dataclass
class Replica:
    """What one gateway process holds of the duplicate groups: its catalog, links and groups."""

    catalog: Catalog
    links: PostgresLinkStore
    groups: DuplicateGroups

    async def duplicate_groups(self, kind: str) -> dict[str, Any]:
        return await self.groups.groups(kind)

    @property
    def group_refreshes(self) -> dict[str, int]:
        return self.groups.follower.refreshes


@asynccontextmanager
async def replica(tmp_path: Path, dsn: str, kept: int = LINK_CHANGES_KEPT) -> AsyncIterator[Replica]:
    """The duplicate groups as a gateway builds them, over its own connection pool to the catalog at
    ``dsn``."""
    settings = GatewaySettings(data_dir=tmp_path / "gateway", services=[])
    clients = ServiceClients(settings, CollectorRegistry())
    migrations = {COMPONENT: MIGRATIONS, duplicates_schema.COMPONENT: duplicates_schema.MIGRATIONS}
    postgres = PostgresComponent(PostgresSettings(dsn=dsn), migrations, "test-groups")
    links = PostgresLinkStore(postgres, changes_kept=kept)
    facts = ImageFacts(postgres)
    sources = AnalysisSources(settings, clients, [])
    search = ReverseSearch(settings, clients, [], facts)
    groups = DuplicateGroups.build(settings, clients, sources, search, facts, links, postgres)
    await asyncio.to_thread(postgres.open)
    try:
        yield Replica(Catalog(postgres, removals=links), links, groups)
    finally:
        await clients.close()
        await asyncio.to_thread(postgres.close)


def added(replica: Replica, image_id: int, links: list[tuple[int, float]]) -> None:
    replica.catalog.begin_add(image_id, [], f"/spool/{image_id}.upload")
    replica.links.add("copies", image_id, links)


def deleted(replica: Replica, image_id: int) -> None:
    replica.catalog.begin_delete(image_id, [])
    replica.links.forget(image_id)


async def grouped(replica: Replica) -> list[list[int]]:
    reply = await replica.duplicate_groups("copies")
    return sorted(sorted(m["image_id"] for m in g["members"]) for g in reply["groups"])

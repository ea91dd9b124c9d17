"""The duplicate links and their change log in PostgreSQL: every link of a kind (``copies``,
``similar``, ``bursts``) with its distance, the kind's generation, and the changes logged under it.

Every change of a kind's links, and every image that stops being an added one (the catalog's
delete and forget, told through :meth:`PostgresLinkStore.image_removed` inside their own
transactions), bumps the kind's generation (its row lock orders the writers of a kind, so a
generation is visible only once it and every earlier one are committed) and logs the change under
it. A person's decision about groups is logged the same way (a ``decision`` change: the groups
re-read the decisions, gateway/duplicates/decisions.py). A gateway remembers the generation its
groups in memory reflect, and on each request applies the changes logged since: its own and other
replicas' alike (gateway/duplicates/follower.py).

An image counts as added unless the write ledger (``gateway_images``) says otherwise: an image
``ambience import`` wrote past the gateway is known here by its links only. :class:`LinkStore` is
what the rest of the duplicates package needs; :class:`PostgresLinkStore` the implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.duplicates.groups import Link
from services.common.postgres.database import Cursor, SqlRunner

#: Kinds of duplicate links, each with its own generation (bursts: the tables of
#: gateway/duplicates/schema.py).
LINK_KINDS = ("copies", "similar", "bursts")
#: Changes of the links kept per kind: a gateway further behind than this reloads its groups whole
#: (as cheap as applying that many changes).
LINK_CHANGES_KEPT = 10_000


@dataclass(frozen=True)
class LinkChange:
    """One change of a kind's links: an image ``add``ed (linked to what it matched), ``remove``d
    (with its links), every link replaced (``rebuild``, ``image_id`` None), or the decisions about
    the kind's groups changed (``decision``, ``image_id`` None)."""

    generation: int
    change: str
    image_id: int | None


@dataclass(frozen=True)
class LinkChanges:
    """A kind's generation now and the changes after the one asked about, oldest first."""

    generation: int
    changes: list[LinkChange]


@dataclass(frozen=True)
class LinkSnapshot:
    """A kind's links whole: the images that are added, the links, and a generation whose changes
    they include (they may include later ones too: the generation is read first)."""

    generation: int
    images: list[int]
    links: list[Link]


class LinkStore(Protocol):
    """The links of each kind and their change log."""

    def add(self, kind: str, image_id: int, links: list[tuple[int, float]]) -> int: ...
    def replace(self, kind: str, links: list[Link], computed_from: int | None = None) -> int: ...
    def all(self, kind: str) -> list[Link]: ...
    def changes(self, kind: str, since: int) -> LinkChanges: ...
    def generation(self, kind: str) -> int: ...
    def snapshot(self, kind: str) -> LinkSnapshot: ...
    def touching(self, kind: str, image_ids: list[int]) -> list[Link]: ...
    def forget(self, image_id: int) -> None: ...


class PostgresLinkStore:
    """:class:`LinkStore` in the catalog's database (tables of gateway/schema.py)."""

    def __init__(self, db: SqlRunner, changes_kept: int = LINK_CHANGES_KEPT) -> None:
        self.db = db
        self.changes_kept = changes_kept

    def _log_change(self, cur: Cursor, kind: str, change: str, image_id: int | None) -> int:
        cur.execute(
            "UPDATE gateway_link_generations SET generation = generation + 1 WHERE kind = %s"
            " RETURNING generation",
            (kind,),
        )
        generation = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO gateway_link_changes (kind, generation, change, image_id) VALUES (%s, %s, %s, %s)",
            (kind, generation, change, image_id),
        )
        cur.execute(
            "DELETE FROM gateway_link_changes WHERE kind = %s AND generation <= %s",
            (kind, generation - self.changes_kept),
        )
        return generation

    def log_decision(self, cur: Cursor, kinds: list[str]) -> None:
        """Inside the caller's transaction (the decision store's): the decisions about the groups of
        ``kinds`` changed. Kinds in LINK_KINDS order, as every writer locks them."""
        for kind in sorted(kinds, key=LINK_KINDS.index):
            self._log_change(cur, kind, "decision", None)

    def image_removed(self, cur: Cursor, image_id: int, drop_links: bool) -> None:
        """Inside the caller's transaction (the catalog's): ``image_id`` left the groups of every
        kind, it is no longer an added image (the groups hold added images only); with
        ``drop_links`` its links go too (an add stored nowhere must not stay linked)."""
        for kind in LINK_KINDS:  # always in this order: two removals never wait on each other
            self._log_change(cur, kind, "remove", image_id)
        if drop_links:
            cur.execute(
                "DELETE FROM gateway_links WHERE image_id = %s OR other_id = %s", (image_id, image_id)
            )

    def forget(self, image_id: int) -> None:
        """Drop an image's links (it is being deleted); logged, as :meth:`add`."""
        self.db.run(lambda cur: self.image_removed(cur, image_id, drop_links=True))

    def add(self, kind: str, image_id: int, links: list[tuple[int, float]]) -> int:
        """Record an added image and its links (none is a change too: the image joins the groups);
        returns the kind's new generation."""

        def run(cur: Cursor) -> int:
            generation = self._log_change(cur, kind, "add", image_id)
            cur.executemany(
                "INSERT INTO gateway_links (kind, image_id, other_id, distance) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (kind, image_id, other_id) DO UPDATE SET distance = EXCLUDED.distance",
                [(kind, image_id, other, distance) for other, distance in links],
            )
            return generation

        return self.db.run(run)

    def replace(self, kind: str, links: list[Link], computed_from: int | None = None) -> int:
        """Every link of ``kind`` at once (a rebuild), but those of images removed after generation
        ``computed_from`` (deleted while the links were computed: they must not come back); returns
        how many links were written."""

        def run(cur: Cursor) -> int:
            removed: set[int] = set()
            if computed_from is not None:
                cur.execute(
                    "SELECT image_id FROM gateway_link_changes"
                    " WHERE kind = %s AND change = 'remove' AND generation > %s",
                    (kind, computed_from),
                )
                removed = {row[0] for row in cur.fetchall()}
            kept = [(a, b, d) for a, b, d in links if a not in removed and b not in removed]
            self._log_change(cur, kind, "rebuild", None)
            cur.execute("DELETE FROM gateway_links WHERE kind = %s", (kind,))
            cur.executemany(
                "INSERT INTO gateway_links (kind, image_id, other_id, distance) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [(kind, a, b, d) for a, b, d in kept],
            )
            return len(kept)

        return self.db.run(run)

    def all(self, kind: str) -> list[Link]:
        def run(cur: Cursor) -> list[Link]:
            cur.execute("SELECT image_id, other_id, distance FROM gateway_links WHERE kind = %s", (kind,))
            return [(a, b, float(d)) for a, b, d in cur.fetchall()]

        return self.db.run(run)

    def changes(self, kind: str, since: int) -> LinkChanges:
        """The kind's generation and the changes after ``since``: one indexed query, no rows when
        nothing changed."""

        def run(cur: Cursor) -> LinkChanges:
            cur.execute(
                "SELECT g.generation, c.generation, c.change, c.image_id FROM gateway_link_generations g"
                " LEFT JOIN gateway_link_changes c ON c.kind = g.kind AND c.generation > %s"
                " WHERE g.kind = %s ORDER BY c.generation",
                (since, kind),
            )
            rows = cur.fetchall()
            changes = [LinkChange(g, change, image) for _, g, change, image in rows if g is not None]
            return LinkChanges(rows[0][0], changes)

        return self.db.run(run)

    def generation(self, kind: str) -> int:
        def run(cur: Cursor) -> int:
            cur.execute("SELECT generation FROM gateway_link_generations WHERE kind = %s", (kind,))
            return int(cur.fetchone()[0])

        return self.db.run(run)

    def snapshot(self, kind: str) -> LinkSnapshot:
        """Every added image and link of ``kind``, with the generation read before them. A link
        counts unless one of its images is known here as not added (being deleted, or an add
        forgotten while a delete is pending): one the gateway never saw (``ambience import``) is
        named by its links."""

        def run(cur: Cursor) -> LinkSnapshot:
            cur.execute("SELECT generation FROM gateway_link_generations WHERE kind = %s", (kind,))
            generation = cur.fetchone()[0]
            cur.execute("SELECT image_id FROM gateway_images WHERE op = 'add' ORDER BY image_id")
            images = [row[0] for row in cur.fetchall()]
            cur.execute(
                "SELECT l.image_id, l.other_id, l.distance FROM gateway_links l WHERE l.kind = %s"
                " AND NOT EXISTS (SELECT 1 FROM gateway_images g"
                " WHERE g.image_id IN (l.image_id, l.other_id) AND g.op <> 'add')",
                (kind,),
            )
            return LinkSnapshot(generation, images, [(a, b, float(d)) for a, b, d in cur.fetchall()])

        return self.db.run(run)

    def touching(self, kind: str, image_ids: list[int]) -> list[Link]:
        """The links of ``kind`` that touch ``image_ids``, as a snapshot holds them."""

        def run(cur: Cursor) -> list[Link]:
            cur.execute(
                "SELECT l.image_id, l.other_id, l.distance FROM gateway_links l"
                " WHERE l.kind = %s AND (l.image_id = ANY(%s) OR l.other_id = ANY(%s))"
                " AND NOT EXISTS (SELECT 1 FROM gateway_images g"
                " WHERE g.image_id IN (l.image_id, l.other_id) AND g.op <> 'add')",
                (kind, image_ids, image_ids),
            )
            return [(a, b, float(d)) for a, b, d in cur.fetchall()]

        return self.db.run(run)

"""The decisions about duplicate groups, in the catalog's database (``gateway_duplicate_decisions``,
gateway/duplicates/schema.py), what they mean: gateway/duplicates/decided.py.

A decision is written, and undone, in one transaction with a ``decision`` change logged for every
kind it applies to (gateway/duplicates/links.py): each gateway replica's groups see the change at
their next request and read the decisions again, so a decision reaches every replica's groups the
same way an add does. Logging first takes the kinds' generation rows, which orders the writers of a
kind: the check that a new decision contradicts none held (a ``not_duplicates`` of two images that
``duplicates`` decisions make one group, or the reverse) sees every decision committed before it.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from gateway.duplicates.decided import DECISIONS, Decision, conflicts
from gateway.duplicates.links import LINK_KINDS, PostgresLinkStore
from services.common.postgres.database import Cursor, SqlRunner

#: Images one decision may name.
MAX_DECISION_IMAGES = 1000

_COLUMNS = "id, decision, kind, image_ids, created_at, detail"


class DecisionConflict(Exception):
    """The decision contradicts decisions held (their ids in ``decisions``)."""

    def __init__(self, message: str, decisions: list[int]) -> None:
        super().__init__(message)
        self.decisions = decisions


class DecisionStore(Protocol):
    """What the groups read of the decisions."""

    def applying_to(self, kind: str) -> list[Decision]: ...


def _decision(row: tuple[Any, ...]) -> Decision:
    id_, decision, kind, image_ids, created_at, detail = row
    return Decision(int(id_), decision, kind, tuple(int(i) for i in image_ids), created_at, detail)


def _kinds(kind: str | None) -> list[str]:
    return list(LINK_KINDS) if kind is None else [kind]


class PostgresDecisionStore:
    """:class:`DecisionStore` in the catalog's database; the changes logged through ``links``."""

    def __init__(self, db: SqlRunner, links: PostgresLinkStore) -> None:
        self.db = db
        self.links = links

    def add(
        self, decision: str, kind: str | None, image_ids: list[int], detail: dict[str, Any] | None = None
    ) -> Decision:
        """Record a decision (the same decision held already is returned, not recorded twice).
        Raises ValueError for a malformed one, :class:`DecisionConflict` when it contradicts one
        held."""
        ids = tuple(sorted(set(image_ids)))
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}: one of {list(DECISIONS)}")
        if kind is not None and kind not in LINK_KINDS:
            raise ValueError(f"unknown kind {kind!r}: one of {list(LINK_KINDS)}")
        if decision != "resolved" and len(ids) < 2:
            raise ValueError("a decision names at least two different images")
        if len(ids) > MAX_DECISION_IMAGES:
            raise ValueError(f"a decision names at most {MAX_DECISION_IMAGES} images")

        def run(cur: Cursor) -> Decision:
            self.links.log_decision(cur, _kinds(kind))  # takes the kinds' rows: writers in order
            held = self._held(cur, kind)
            if decision != "resolved":
                same = next(
                    (d for d in held if (d.decision, d.kind, d.image_ids) == (decision, kind, ids)), None
                )
                if same is not None:
                    return same
                clash = conflicts(
                    held, Decision(-1, decision, kind, ids), _kinds(kind) if kind else LINK_KINDS
                )
                if clash:
                    raise DecisionConflict(
                        f"{decision} contradicts decision(s) {clash}: remove them first", clash
                    )
            cur.execute(
                f"INSERT INTO gateway_duplicate_decisions (decision, kind, image_ids, detail)"
                f" VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}",
                (decision, kind, list(ids), json.dumps(detail) if detail is not None else None),
            )
            return _decision(cur.fetchone())

        return self.db.run(run)

    def _held(self, cur: Cursor, kind: str | None) -> list[Decision]:
        """The decisions that share a kind with one of ``kind`` (None: every kind)."""
        if kind is None:
            cur.execute(f"SELECT {_COLUMNS} FROM gateway_duplicate_decisions ORDER BY id")
        else:
            cur.execute(
                f"SELECT {_COLUMNS} FROM gateway_duplicate_decisions WHERE kind IS NULL OR kind = %s"
                " ORDER BY id",
                (kind,),
            )
        return [_decision(row) for row in cur.fetchall()]

    def remove(self, decision_id: int) -> Decision | None:
        """Undo a decision (logged); None when there is none with this id."""

        def run(cur: Cursor) -> Decision | None:
            cur.execute("SELECT kind FROM gateway_duplicate_decisions WHERE id = %s", (decision_id,))
            row = cur.fetchone()
            if row is None:
                return None
            self.links.log_decision(cur, _kinds(row[0]))
            cur.execute(
                f"DELETE FROM gateway_duplicate_decisions WHERE id = %s RETURNING {_COLUMNS}", (decision_id,)
            )
            found = cur.fetchone()
            return _decision(found) if found else None

        return self.db.run(run)

    def applying_to(self, kind: str) -> list[Decision]:
        return self.db.run(lambda cur: self._held(cur, kind))

    def listed(
        self,
        kind: str | None = None,
        decision: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[Decision]:
        """Newest first: those applying to ``kind`` (every one when None), of ``decision`` when
        given, with ids below ``before`` (the next page)."""

        def run(cur: Cursor) -> list[Decision]:
            cur.execute(
                f"SELECT {_COLUMNS} FROM gateway_duplicate_decisions"
                " WHERE (%s::text IS NULL OR kind IS NULL OR kind = %s)"
                " AND (%s::text IS NULL OR decision = %s) AND (%s::bigint IS NULL OR id < %s)"
                " ORDER BY id DESC LIMIT %s",
                (kind, kind, decision, decision, before, before, limit),
            )
            return [_decision(row) for row in cur.fetchall()]

        return self.db.run(run)

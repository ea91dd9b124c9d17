"""The gateway's write ledger in PostgreSQL: per image and service, what is done and what is pending.

An image is either being added (``op = 'add'``, the uploaded bytes kept in a spool file until every
service has them) or being deleted (``op = 'delete'``, the row disappears once every service has
dropped it). Each (image, service) part carries its own operation, so operations on one id are
ordered per service: a new add of an id whose delete is still pending on some service is accepted;
that service's part stays a pending delete with the add queued behind it (``add_queued``), and
becomes the add (of the image's current spool file and digest) once the delete is confirmed, while
the services that confirmed the delete get the add at once. Each part is ``pending`` (the retry
worker sends it again after a backoff), ``done``, ``rejected`` (the service refused the input with
a 4xx: retrying cannot help), or ``failed``: a permanent server error, or ``max_attempts`` transient
failures. A failed part keeps its image's spool file and is visible (``/catalog_stats``,
``/health``, ``ambience catalog status``) until ``ambience catalog retry`` sends it again or the
image is deleted.

Every update of a part is conditional on the part's current operation, so a retry that finishes
after the image was deleted cannot mark it added again; the gateway additionally serialises all
work on one image id (see ``gateway.writer``), so an add never reaches a service before the delete
that preceded it, nor after the delete that followed it.

What follows an add (the image's facts, its thumbnail, its duplicate links, ...: gateway/after_add.py)
is recorded with it, in the same transaction, as ordered steps (``gateway_steps``, whose rows
gateway/step_records.py reads and writes), each ``pending`` until a background worker has done it,
then ``done`` or, after ``max_attempts``, ``failed``. The spool file stays until every step that
reads the upload is done. What is left to do, read by the
workers and the reports, is gateway/backlog.py.

Whoever follows which images are added (the duplicate groups) is told, inside the ledger's own
transaction, when one stops being an added image (:class:`RemovalLog`). The tables are in
gateway/schema.py; what is known of each image is gateway/image_facts.py.

Plain synchronous methods over a :class:`services.common.postgres.database.SqlRunner`; the app calls
them in worker threads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg2.extras

from gateway import step_records
from gateway.step_records import BACKOFF_SQL, StepDecl
from services.common.postgres.database import Cursor, SqlRunner

DONE, PENDING, REJECTED, FAILED = "done", "pending", "rejected", "failed"


def as_json(value: dict[str, Any] | None) -> psycopg2.extras.Json | None:
    return None if value is None else psycopg2.extras.Json(value)


class CatalogConflict(Exception):
    """The image id is taken (HTTP 409)."""


@dataclass(frozen=True)
class PartOp:
    """What one service's part asks for now: ``op`` there, then (a delete with ``add_queued``) the
    image's current add."""

    service: str
    op: str
    add_queued: bool = False


def pending_ops(cur: Cursor, image_id: int) -> list[PartOp]:
    cur.execute(
        "SELECT service, op, add_queued FROM gateway_parts WHERE image_id = %s AND status = 'pending'"
        " ORDER BY service",
        (image_id,),
    )
    return [PartOp(*row) for row in cur.fetchall()]


class RemovalLog(Protocol):
    """Told, inside the ledger's transaction, that an image stopped being an added one (a delete
    began, or an add every service rejected was forgotten: then its links go too)."""

    def image_removed(self, cur: Cursor, image_id: int, drop_links: bool) -> None: ...


class Catalog:
    def __init__(
        self,
        db: SqlRunner,
        backoff_s: float = 2.0,
        backoff_max_s: float = 300.0,
        max_attempts: int = 300,
        removals: RemovalLog | None = None,
        replica: str = "",
    ) -> None:
        """``replica``: this gateway's name, recorded with each add it takes, whose steps then go
        to it first (gateway/backlog.py); empty: any gateway's workers take them at once."""
        self.db = db
        self.replica = replica or None
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self.removals = removals

    def _removed(self, cur: Cursor, image_id: int, drop_links: bool = False) -> None:
        if self.removals is not None:
            self.removals.image_removed(cur, image_id, drop_links)

    # -- starting operations ------------------------------------------------------------------

    def _insert_parts(
        self,
        cur: Cursor,
        image_id: int,
        op: str,
        services: Iterable[str],
        deferred: frozenset[str] = frozenset(),
    ) -> None:
        """New pending parts, first retry after one backoff (the request itself tries them now), but
        the ``deferred`` ones (an add does not wait for them): due at once, for the retry worker."""
        cur.executemany(
            "INSERT INTO gateway_parts (image_id, service, op, status, next_try)"
            " VALUES (%s, %s, %s, 'pending', now() + make_interval(secs => %s))",
            [(image_id, name, op, 0 if name in deferred else self.backoff_s) for name in services],
        )

    def begin_add(
        self,
        image_id: int,
        services: Iterable[str],
        spool: str,
        digest: str = "",
        steps: Sequence[StepDecl] = (),
        file_name: str | None = None,
        facts: dict[str, Any] | None = None,
        deferred: frozenset[str] = frozenset(),
    ) -> list[PartOp]:
        """Record that ``image_id`` (content ``digest``) is being added to ``services``; returns the
        pending part operations the request sends now, and records ``steps``, what follows the add
        (pending, in their order), the upload's ``file_name`` and ``facts`` (read from its header,
        a JSON object: the ``facts`` step keeps them). The parts of the ``deferred`` services are
        recorded due at once and left out of what is returned: the retry worker sends them.

        An id still being deleted somewhere is taken over: services that confirmed the delete get
        the add at once; on a service whose delete is pending (or gave up) the add is queued behind
        the delete. Idempotent per upload: the spool file name is unique to one request, so when the
        database connection broke during COMMIT and the transaction is run again, a row that already
        names this spool file is this very add, committed the first time, not a conflict."""
        names = list(services)

        def run(cur: Cursor) -> list[PartOp]:
            cur.execute(
                "SELECT op, spool, digest FROM gateway_images WHERE image_id = %s FOR UPDATE", (image_id,)
            )
            row = cur.fetchone()
            if row is not None and row[0] == "add":
                if row[1] == spool:  # our own first attempt committed
                    return [op for op in pending_ops(cur, image_id) if op.service not in deferred]
                same = " (the same image)" if digest and row[2] == digest else ""
                raise CatalogConflict(f"image_id {image_id} already exists{same}")
            if row is None:
                cur.execute(
                    "INSERT INTO gateway_images (image_id, op, spool, digest, file_name, facts, added_by)"
                    " VALUES (%s, 'add', %s, %s, %s, %s, %s)",
                    (image_id, spool, digest or None, file_name, as_json(facts), self.replica),
                )
                self._insert_parts(cur, image_id, "add", names, deferred)
                step_records.insert(cur, image_id, steps)
                return [op for op in pending_ops(cur, image_id) if op.service not in deferred]
            cur.execute(
                "UPDATE gateway_images SET op = 'add', spool = %s, digest = %s, file_name = %s, facts = %s,"
                " added_by = %s, updated_at = now() WHERE image_id = %s",
                (spool, digest or None, file_name, as_json(facts), self.replica, image_id),
            )
            step_records.insert(cur, image_id, steps)
            cur.execute(
                "UPDATE gateway_parts SET add_queued = true WHERE image_id = %s AND service = ANY(%s)"
                " RETURNING service",
                (image_id, names),
            )
            deleting = {r[0] for r in cur.fetchall()}
            self._insert_parts(cur, image_id, "add", [n for n in names if n not in deleting], deferred)
            return [
                op for op in pending_ops(cur, image_id) if op.service not in deferred or op.op == "delete"
            ]

        return self.db.run(run, idempotent=True)

    def begin_delete(self, image_id: int, services: Iterable[str]) -> tuple[str | None, list[str]]:
        """Record that ``image_id`` is being deleted from ``services`` and from every service that has
        a part of it (a queued add is dropped). Returns the spool file the image had (the caller
        removes it) and the services to send the delete to."""
        names = set(services)

        def run(cur: Cursor) -> tuple[str | None, list[str]]:
            cur.execute("SELECT spool, op FROM gateway_images WHERE image_id = %s FOR UPDATE", (image_id,))
            row = cur.fetchone()
            spool = row[0] if row else None
            if row is not None and row[1] == "add":
                self._removed(cur, image_id)  # no longer in the duplicate groups
            cur.execute("SELECT service FROM gateway_parts WHERE image_id = %s", (image_id,))
            names.update(r[0] for r in cur.fetchall())
            cur.execute(
                "INSERT INTO gateway_images (image_id, op, spool) VALUES (%s, 'delete', NULL)"
                " ON CONFLICT (image_id) DO UPDATE SET op = 'delete', spool = NULL, digest = NULL,"
                " updated_at = now()",
                (image_id,),
            )
            cur.execute("DELETE FROM gateway_parts WHERE image_id = %s", (image_id,))
            cur.execute("DELETE FROM gateway_steps WHERE image_id = %s", (image_id,))
            self._insert_parts(cur, image_id, "delete", sorted(names))
            return spool, sorted(names)

        return self.db.run(run)

    def forget(self, image_id: int) -> None:
        """Drop an add that every service it reached rejected (bad input: it was stored nowhere).
        Deletes still pending for the id stay, without the add queued behind them."""

        def run(cur: Cursor) -> None:
            cur.execute("SELECT op FROM gateway_images WHERE image_id = %s FOR UPDATE", (image_id,))
            row = cur.fetchone()
            if row is None or row[0] != "add":
                return
            # another image's links may name it already; stored nowhere, no link may keep it in the
            # groups (an unknown id named by a link is an imported image)
            self._removed(cur, image_id, drop_links=True)
            cur.execute("DELETE FROM gateway_parts WHERE image_id = %s AND op = 'add'", (image_id,))
            cur.execute("DELETE FROM gateway_steps WHERE image_id = %s", (image_id,))
            cur.execute(
                "UPDATE gateway_parts SET add_queued = false WHERE image_id = %s RETURNING service",
                (image_id,),
            )
            if cur.fetchall():
                cur.execute(
                    "UPDATE gateway_images SET op = 'delete', spool = NULL, digest = NULL, updated_at = now()"
                    " WHERE image_id = %s",
                    (image_id,),
                )
            else:
                cur.execute("DELETE FROM gateway_images WHERE image_id = %s", (image_id,))

        self.db.run(run)

    # -- outcomes -----------------------------------------------------------------------------

    def record(self, image_id: int, op: str, outcomes: dict[str, tuple[str, str | None]]) -> str | None:
        """Record ``{service: (done|pending|rejected|failed, error)}`` for the parts whose operation
        is ``op`` (a part that has moved on to another operation is left alone). A confirmed delete
        ends its part, or turns it into the add queued behind it. Returns the spool file to remove
        when the image is now complete."""

        def run(cur: Cursor) -> str | None:
            cur.execute("SELECT op, spool FROM gateway_images WHERE image_id = %s FOR UPDATE", (image_id,))
            row = cur.fetchone()
            if row is None:
                return None
            if op == "add" and row[0] == "add":  # the add was sent: what follows it may run
                step_records.make_due(cur, image_id)
            for service, (status, error) in outcomes.items():
                key = (image_id, service, op)
                if status == DONE and op == "delete":
                    cur.execute(
                        "DELETE FROM gateway_parts WHERE image_id = %s AND service = %s AND op = %s"
                        " AND NOT add_queued",
                        key,
                    )
                    cur.execute(
                        "UPDATE gateway_parts SET op = 'add', add_queued = false, status = 'pending',"
                        " attempts = 0, last_error = NULL, next_try = now() + make_interval(secs => %s)"
                        " WHERE image_id = %s AND service = %s AND op = %s AND add_queued",
                        (self.backoff_s, *key),
                    )
                elif status == PENDING:
                    # Backoff doubling up to its cap; the last allowed attempt gives up for good.
                    cur.execute(
                        "UPDATE gateway_parts SET attempts = attempts + 1, last_error = %s,"
                        " status = CASE WHEN attempts + 1 >= %s THEN 'failed' ELSE 'pending' END,"
                        f" next_try = {BACKOFF_SQL} WHERE image_id = %s AND service = %s AND op = %s",
                        (error, self.max_attempts, self.backoff_s, self.backoff_max_s, *key),
                    )
                else:
                    cur.execute(
                        "UPDATE gateway_parts SET status = %s, last_error = %s"
                        " WHERE image_id = %s AND service = %s AND op = %s",
                        (status, error, *key),
                    )
            return self._release(cur, image_id, row[0], row[1])

        return self.db.run(run)

    def _release(self, cur: Cursor, image_id: int, op: str, spool: str | None) -> str | None:
        """Once nothing needs the image's row or upload any more: a finished delete's row goes, a
        finished add's spool file is handed back (the caller removes it)."""
        cur.execute(
            "SELECT count(*) FROM gateway_parts WHERE image_id = %s AND status IN ('pending', 'failed')",
            (image_id,),
        )
        if cur.fetchone()[0]:  # still to do, or kept for `ambience catalog retry` (with its upload)
            return None
        if op == "delete":
            cur.execute("DELETE FROM gateway_images WHERE image_id = %s", (image_id,))
            return None
        if step_records.reading_upload(cur, image_id):  # a step that follows the add still reads it
            return None
        if spool is not None:
            cur.execute(
                "UPDATE gateway_images SET spool = NULL, updated_at = now() WHERE image_id = %s", (image_id,)
            )
        return spool

    def record_step(
        self,
        image_id: int,
        step: str,
        outcome: str,
        error: str | None = None,
        wait_s: float | None = None,
        token: str | None = None,
    ) -> str | None:
        """Record one step's ``outcome``: ``done``, ``failed`` (for good), ``pending`` (an attempt
        failed: again after a backoff, ``failed`` after ``max_attempts``), ``waiting`` (not tried:
        what it needs is not there yet, again in ``wait_s``, no attempt counted) or ``released``
        (not tried, an earlier step stopped). Releases the step's claim. With ``token`` (the claim's)
        nothing is recorded when the claim is no longer this one (it ran out and another worker
        took the step). Returns the spool file to remove when the image no longer needs it."""

        def run(cur: Cursor) -> str | None:
            cur.execute("SELECT op, spool FROM gateway_images WHERE image_id = %s FOR UPDATE", (image_id,))
            row = cur.fetchone()
            if row is None or row[0] != "add":
                return None
            backoff = (self.backoff_s, self.backoff_max_s, self.max_attempts)
            if not step_records.record_outcome(cur, image_id, step, outcome, error, wait_s, token, backoff):
                return None  # released, or the claim ran out: its new holder records the step
            return self._release(cur, image_id, row[0], row[1])

        return self.db.run(run)

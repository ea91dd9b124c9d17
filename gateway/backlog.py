"""What is left to do, as the gateway's workers and reports read it from the write ledger
(gateway/catalog.py): the service parts due for a retry, the images whose steps are due (claimed
for a while, so that replicas sharing the catalog never run one twice and a worker killed half way
is taken over once its claim runs out), what one image stands at, and the counts /health and
/catalog_stats show.

Plain synchronous methods over a :class:`services.common.postgres.database.SqlRunner`; the app
calls them in worker threads.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extras

from gateway.catalog import FAILED, PENDING
from services.common.postgres.database import Cursor, SqlRunner


@dataclass(frozen=True)
class DuePart:
    image_id: int
    service: str
    op: str
    spool: str | None
    attempts: int


@dataclass(frozen=True)
class PartState:
    """One part as it stands: its operation, status, the image's spool file, a queued add."""

    op: str
    status: str
    spool: str | None
    add_queued: bool


@dataclass
class ClaimedImage:
    """An added image whose pending steps a worker now holds, in their order, with what they need:
    the spool file, the upload's file name and facts, and whether a service part is still pending."""

    image_id: int
    spool: str | None
    file_name: str | None
    facts: dict[str, Any] | None
    #: The services whose part of the add is still pending.
    pending_services: list[str]
    steps: list[str] = field(default_factory=list)
    #: This claim's token: the steps are recorded only while it is still theirs.
    token: str = ""


#: The steps a replica may claim now (``FROM`` and ``WHERE`` of a query over ``s``; parameters
#: ``replica`` and ``lease``): due and unclaimed, every pending step before it too, and of an add
#: that this replica took, or that has waited a lease for the replica that took it.
RUNNABLE = (
    "gateway_steps s JOIN gateway_images i USING (image_id)"
    " WHERE s.status = 'pending' AND i.op = 'add' AND s.next_try <= now()"
    " AND (s.claimed_until IS NULL OR s.claimed_until < now())"
    " AND (i.added_by IS NULL OR i.added_by = %(replica)s"
    " OR s.next_try <= now() - make_interval(secs => %(lease)s))"
    " AND NOT EXISTS (SELECT 1 FROM gateway_steps e WHERE e.image_id = s.image_id"
    " AND e.status = 'pending' AND e.rank < s.rank"
    " AND (e.next_try > now() OR e.claimed_until >= now()"
    " OR (i.added_by <> %(replica)s AND e.next_try > now() - make_interval(secs => %(lease)s))))"
)


class Backlog:
    def __init__(self, db: SqlRunner) -> None:
        self.db = db

    # -- the step workers' images ---------------------------------------------------------------

    def claim_steps(self, limit: int, lease_s: float, replica: str) -> list[ClaimedImage]:
        """Up to ``limit`` added images with steps due (lowest ids first), each with its pending
        steps that may run now, in order, claimed by ``replica`` for ``lease_s`` seconds. A step may
        run when it is due and unclaimed and so is every pending step before it; images another
        worker holds (claiming, recording) are skipped.

        The steps of an add go to the gateway that took it: it holds the upload in its spool, and
        its settings chose the add. Another gateway takes them only once they have been due for
        ``lease_s`` (the gateway that took the add was killed or is gone)."""

        def run(cur: Cursor) -> list[ClaimedImage]:
            mine = {"replica": replica, "lease": float(lease_s), "limit": limit, "scan": limit * 8}
            # First the images, locked whole: a lock taken row by row while scanning the steps
            # could skip an image's first step (another worker held the image for a moment) and
            # take its next one, which would then run before it.
            cur.execute(
                f"WITH due AS (SELECT DISTINCT s.image_id FROM {RUNNABLE} ORDER BY s.image_id"
                " LIMIT %(scan)s) SELECT i.image_id FROM gateway_images i JOIN due USING (image_id)"
                " ORDER BY i.image_id LIMIT %(limit)s FOR UPDATE OF i SKIP LOCKED",
                mine,
            )
            locked = [row[0] for row in cur.fetchall()]
            if not locked:
                return []
            # Then their steps, read after the locks were taken: every writer of an image's steps
            # holds its row, so this is how they stand until the claim commits.
            cur.execute(
                f"SELECT s.image_id, s.step FROM {RUNNABLE} AND s.image_id = ANY(%(locked)s)"
                " ORDER BY s.image_id, s.rank",
                {**mine, "locked": locked},
            )
            rows = cur.fetchall()
            chosen: dict[int, list[str]] = {}
            for image_id, step in rows:
                chosen.setdefault(image_id, []).append(step)
            if not chosen:
                return []
            tokens = {i: str(uuid.uuid4()) for i in chosen}
            # The UPDATE checks each step again as committed: a claim stays whole even if a writer
            # ever changed steps without the image's lock.
            taken = psycopg2.extras.execute_values(
                cur,
                "UPDATE gateway_steps s SET claimed_until = now() + make_interval(secs => v.lease),"
                " claimed_by = v.replica, claim_token = v.token FROM (VALUES %s) AS v (image_id, step,"
                " token, lease, replica) WHERE s.image_id = v.image_id AND s.step = v.step"
                " AND s.status = 'pending' AND (s.claimed_until IS NULL OR s.claimed_until < now())"
                " RETURNING s.image_id, s.step",
                [(i, step, tokens[i], float(lease_s), replica) for i in chosen for step in chosen[i]],
                template="(%s::bigint, %s, %s::uuid, %s::float8, %s)",
                fetch=True,
            )
            got: dict[int, set[str]] = {}
            for image_id, step in taken:
                got.setdefault(int(image_id), set()).add(step)
            partly = [i for i in chosen if got.get(i, set()) != set(chosen[i])]
            if partly:  # a step of these is another worker's: the image is theirs
                cur.execute(
                    "UPDATE gateway_steps SET claimed_until = NULL, claim_token = NULL"
                    " WHERE image_id = ANY(%s) AND claim_token = ANY(%s::uuid[])",
                    (partly, [tokens[i] for i in partly]),
                )
            ids = sorted(i for i in chosen if i not in partly)
            if not ids:
                return []
            cur.execute(
                "SELECT i.image_id, i.spool, i.file_name, i.facts,"
                " ARRAY(SELECT p.service FROM gateway_parts p WHERE p.image_id = i.image_id"
                " AND p.status = 'pending' ORDER BY p.service)"
                " FROM gateway_images i WHERE i.image_id = ANY(%s) ORDER BY i.image_id",
                (ids,),
            )
            return [ClaimedImage(*row, steps=chosen[row[0]], token=tokens[row[0]]) for row in cur.fetchall()]

        return self.db.run(run)

    def release_claims(self, replica: str) -> int:
        """Steps ``replica`` claimed and never finished (it was killed) may run again at once."""

        def run(cur: Cursor) -> int:
            cur.execute(
                "UPDATE gateway_steps SET claimed_until = NULL WHERE claimed_by = %s AND status = 'pending'",
                (replica,),
            )
            return cur.rowcount

        return self.db.run(run)

    # -- the retry worker's parts -------------------------------------------------------------

    def due(self, limit: int) -> list[DuePart]:
        def run(cur: Cursor) -> list[DuePart]:
            cur.execute(
                "SELECT p.image_id, p.service, p.op, i.spool, p.attempts FROM gateway_parts p"
                " JOIN gateway_images i USING (image_id)"
                " WHERE p.status = 'pending' AND p.next_try <= now() ORDER BY p.next_try LIMIT %s",
                (limit,),
            )
            return [DuePart(*row) for row in cur.fetchall()]

        return self.db.run(run)

    def part(self, image_id: int, service: str) -> PartState | None:
        """One part now, or None when it no longer exists."""

        def run(cur: Cursor) -> PartState | None:
            cur.execute(
                "SELECT p.op, p.status, i.spool, p.add_queued FROM gateway_parts p"
                " JOIN gateway_images i USING (image_id) WHERE p.image_id = %s AND p.service = %s",
                (image_id, service),
            )
            row = cur.fetchone()
            return PartState(*row) if row else None

        return self.db.run(run)

    # -- reading ------------------------------------------------------------------------------

    def retry_failed(self, image_ids: list[int] | None = None) -> int:
        """Send parts and steps that gave up again (all, or those of ``image_ids``), at once, with a
        fresh attempt count. Returns how many were re-queued."""

        def run(cur: Cursor) -> int:
            count = 0
            for table in ("gateway_parts", "gateway_steps"):
                cur.execute(
                    f"UPDATE {table} SET status = 'pending', attempts = 0, next_try = now()"
                    " WHERE status = 'failed' AND (%s::bigint[] IS NULL OR image_id = ANY(%s::bigint[]))",
                    (image_ids, image_ids),
                )
                count += cur.rowcount
            return count

        return self.db.run(run)

    def due_now(self, service: str) -> int:
        """Make every pending part of ``service`` due at once (it answers again)."""

        def run(cur: Cursor) -> int:
            cur.execute(
                "UPDATE gateway_parts SET next_try = now() WHERE service = %s AND status = 'pending'",
                (service,),
            )
            return cur.rowcount

        return self.db.run(run)

    def spool_files(self) -> set[str]:
        """Every spool file an image still needs (for reconciling the spool at start)."""

        def run(cur: Cursor) -> set[str]:
            cur.execute("SELECT spool FROM gateway_images WHERE spool IS NOT NULL")
            return {row[0] for row in cur.fetchall()}

        return self.db.run(run)

    def status(self, image_ids: list[int]) -> dict[int, dict[str, Any]]:
        """Per image: its parts and the steps that follow its add, and its state: ``deleting``,
        ``pending`` (a service does not have it yet), ``failed`` (a part gave up), ``finishing``
        (every service has it, steps are left) or ``complete``. Unknown ids are absent."""

        def run(cur: Cursor) -> dict[int, dict[str, Any]]:
            cur.execute(
                "SELECT i.image_id, i.op, i.digest, p.service, p.op, p.add_queued, p.status, p.attempts,"
                " p.last_error FROM gateway_images i LEFT JOIN gateway_parts p USING (image_id)"
                " WHERE i.image_id = ANY(%s) ORDER BY i.image_id, p.service",
                (image_ids,),
            )
            out: dict[int, dict[str, Any]] = {}
            for image_id, op, digest, service, part_op, queued, status, attempts, error in cur.fetchall():
                entry = out.setdefault(image_id, {"op": op, "digest": digest, "parts": {}, "steps": {}})
                if service is not None:
                    entry["parts"][service] = {
                        "op": part_op,
                        "add_queued": queued,
                        "status": status,
                        "attempts": attempts,
                        "error": error,
                    }
            cur.execute(
                "SELECT image_id, step, status, attempts, last_error FROM gateway_steps"
                " WHERE image_id = ANY(%s) ORDER BY image_id, rank",
                (image_ids,),
            )
            for image_id, step, status, attempts, error in cur.fetchall():
                out[image_id]["steps"][step] = {"status": status, "attempts": attempts, "error": error}
            for entry in out.values():
                parts = {p["status"] for p in entry["parts"].values()}
                steps = {s["status"] for s in entry["steps"].values()}
                if entry["op"] == "delete":
                    entry["state"] = "deleting"
                elif PENDING in parts:
                    entry["state"] = "pending"
                elif FAILED in parts:
                    entry["state"] = "failed"
                elif PENDING in steps:
                    entry["state"] = "finishing"
                else:
                    entry["state"] = "complete"
            return out

        return self.db.run(run)

    def counts(self) -> dict[str, Any]:
        def run(cur: Cursor) -> dict[str, Any]:
            cur.execute("SELECT op, count(*) FROM gateway_images GROUP BY op")
            images = dict(cur.fetchall())
            cur.execute(
                "SELECT service, count(*) FROM gateway_parts WHERE status = 'pending' GROUP BY service"
            )
            pending = dict(cur.fetchall())
            cur.execute(
                "SELECT service, count(*) FROM gateway_parts WHERE status = 'failed' GROUP BY service"
            )
            failed = dict(cur.fetchall())
            cur.execute("SELECT max(image_id) FROM gateway_images")
            max_id = cur.fetchone()[0]
            cur.execute(
                "SELECT step, status, count(*) FROM gateway_steps WHERE status <> 'done'"
                " GROUP BY step, status"
            )
            steps: dict[str, dict[str, int]] = {PENDING: {}, FAILED: {}}
            for step, status, count in cur.fetchall():
                steps[status][step] = count
            return {
                "images": images.get("add", 0),
                "deleting": images.get("delete", 0),
                "pending_parts": pending,
                "failed_parts": failed,
                "pending_steps": steps[PENDING],
                "failed_steps": steps[FAILED],
                "max_image_id": max_id,
            }

        return self.db.run(run)

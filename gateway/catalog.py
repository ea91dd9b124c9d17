"""The gateway's catalog in PostgreSQL: per image and service, what is done and what is pending.

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

Plain synchronous functions over :class:`services.common.postgres.Database`; the app calls them in
worker threads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from services.common.postgres import Cursor, Database, Migration

COMPONENT = "gateway"

MIGRATIONS = [
    Migration(
        1,
        "catalog",
        """
        CREATE TABLE gateway_images (
            image_id bigint PRIMARY KEY,
            op text NOT NULL CHECK (op IN ('add', 'delete')),
            spool text,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE gateway_parts (
            image_id bigint NOT NULL REFERENCES gateway_images ON DELETE CASCADE,
            service text NOT NULL,
            status text NOT NULL CHECK (status IN ('pending', 'done', 'rejected')),
            attempts integer NOT NULL DEFAULT 0,
            next_try timestamptz NOT NULL DEFAULT now(),
            last_error text,
            PRIMARY KEY (image_id, service)
        );
        CREATE INDEX gateway_parts_due ON gateway_parts (next_try) WHERE status = 'pending';
        """,
    ),
    Migration(
        2,
        "image metadata and duplicate links",
        """
        CREATE TABLE gateway_image_info (
            image_id bigint PRIMARY KEY,
            width integer,
            height integer,
            bytes bigint NOT NULL,
            file_name text,
            captured_at timestamp,
            gps_latitude double precision,
            gps_longitude double precision
        );
        CREATE TABLE gateway_links (
            kind text NOT NULL CHECK (kind IN ('copies', 'similar')),
            image_id bigint NOT NULL,
            other_id bigint NOT NULL,
            distance double precision NOT NULL,
            PRIMARY KEY (kind, image_id, other_id)
        );
        CREATE INDEX gateway_links_other ON gateway_links (other_id);
        """,
    ),
    Migration(
        3,
        "parts that gave up",
        """
        ALTER TABLE gateway_parts DROP CONSTRAINT gateway_parts_status_check;
        ALTER TABLE gateway_parts ADD CONSTRAINT gateway_parts_status_check
            CHECK (status IN ('pending', 'done', 'rejected', 'failed'));
        """,
    ),
    Migration(
        4,
        "content digest per image",
        "ALTER TABLE gateway_images ADD COLUMN digest text;",
    ),
    Migration(
        5,
        "an operation per part: a delete pending on one service, the next add queued behind it",
        """
        ALTER TABLE gateway_parts ADD COLUMN op text;
        UPDATE gateway_parts p SET op = i.op FROM gateway_images i WHERE i.image_id = p.image_id;
        ALTER TABLE gateway_parts ALTER COLUMN op SET NOT NULL;
        ALTER TABLE gateway_parts ADD CONSTRAINT gateway_parts_op_check CHECK (op IN ('add', 'delete'));
        ALTER TABLE gateway_parts ADD COLUMN add_queued boolean NOT NULL DEFAULT false;
        """,
    ),
    Migration(
        6,
        "a generation and change log of the duplicate links, so that every gateway replica follows them",
        """
        CREATE TABLE gateway_link_generations (
            kind text PRIMARY KEY CHECK (kind IN ('copies', 'similar')),
            generation bigint NOT NULL
        );
        INSERT INTO gateway_link_generations (kind, generation) VALUES ('copies', 0), ('similar', 0);
        CREATE TABLE gateway_link_changes (
            kind text NOT NULL,
            generation bigint NOT NULL,
            change text NOT NULL CHECK (change IN ('add', 'remove', 'rebuild')),
            image_id bigint,
            PRIMARY KEY (kind, generation)
        );
        """,
    ),
    Migration(
        7,
        "the exact exposure time of an image (two shots are never copies of each other)",
        """
        ALTER TABLE gateway_image_info ADD COLUMN exposed_at timestamp;
        ALTER TABLE gateway_image_info ADD COLUMN exposure_subsecond boolean;
        """,
    ),
    Migration(
        8,
        "photo or video, its format and duration, the two halves of a Live Photo (gateway/live_photos.py)",
        r"""
        ALTER TABLE gateway_image_info ADD COLUMN kind text;
        ALTER TABLE gateway_image_info ADD COLUMN format text;
        ALTER TABLE gateway_image_info ADD COLUMN duration_s double precision;
        ALTER TABLE gateway_image_info ADD COLUMN live_photo_of bigint;
        CREATE INDEX gateway_image_info_base_name
            ON gateway_image_info (lower(regexp_replace(file_name, '\.[^./\\]*$', '')));
        """,
    ),
]

#: Kinds of duplicate links (gateway/explore.py), each with its own generation.
LINK_KINDS = ("copies", "similar")
#: Changes of the links kept per kind: a gateway further behind than this reloads its groups whole
#: (as cheap as applying that many changes).
LINK_CHANGES_KEPT = 10_000

INFO_COLUMNS = (
    "width",
    "height",
    "bytes",
    "file_name",
    "captured_at",
    "exposed_at",
    "exposure_subsecond",
    "gps_latitude",
    "gps_longitude",
    "kind",
    "format",
    "duration_s",
    "live_photo_of",
)

DONE, PENDING, REJECTED, FAILED = "done", "pending", "rejected", "failed"


class CatalogConflict(Exception):
    """The image id is taken (HTTP 409)."""


@dataclass(frozen=True)
class Step:
    """What one service's part asks for now: ``op`` there, then (a delete with ``add_queued``) the
    image's current add."""

    service: str
    op: str
    add_queued: bool = False


@dataclass(frozen=True)
class DuePart:
    image_id: int
    service: str
    op: str
    spool: str | None
    attempts: int


@dataclass(frozen=True)
class LinkChange:
    """One change of a kind's links: an image ``add``ed (linked to what it matched), ``remove``d
    (with its links), or every link replaced (``rebuild``, ``image_id`` None)."""

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
    links: list[tuple[int, int, float]]


@dataclass(frozen=True)
class PartState:
    """One part as it stands: its operation, status, the image's spool file, a queued add."""

    op: str
    status: str
    spool: str | None
    add_queued: bool


def pending_steps(cur: Cursor, image_id: int) -> list[Step]:
    cur.execute(
        "SELECT service, op, add_queued FROM gateway_parts WHERE image_id = %s AND status = 'pending'"
        " ORDER BY service",
        (image_id,),
    )
    return [Step(*row) for row in cur.fetchall()]


class Catalog:
    def __init__(
        self,
        db: Database,
        backoff_s: float = 2.0,
        backoff_max_s: float = 300.0,
        max_attempts: int = 300,
        link_changes_kept: int = LINK_CHANGES_KEPT,
    ) -> None:
        self.db = db
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self.link_changes_kept = link_changes_kept

    # -- starting operations ------------------------------------------------------------------

    def _insert_parts(self, cur: Cursor, image_id: int, op: str, services: Iterable[str]) -> None:
        """New pending parts, first retry after one backoff (the request itself tries them now)."""
        cur.executemany(
            "INSERT INTO gateway_parts (image_id, service, op, status, next_try)"
            " VALUES (%s, %s, %s, 'pending', now() + make_interval(secs => %s))",
            [(image_id, name, op, self.backoff_s) for name in services],
        )

    def begin_add(self, image_id: int, services: Iterable[str], spool: str, digest: str = "") -> list[Step]:
        """Record that ``image_id`` (content ``digest``) is being added to ``services``; returns the
        pending steps the request sends now.

        An id still being deleted somewhere is taken over: services that confirmed the delete get
        the add at once; on a service whose delete is pending (or gave up) the add is queued behind
        the delete. Idempotent per upload: the spool file name is unique to one request, so when the
        database connection broke during COMMIT and the transaction is run again, a row that already
        names this spool file is this very add, committed the first time, not a conflict."""
        names = list(services)

        def run(cur: Cursor) -> list[Step]:
            cur.execute(
                "SELECT op, spool, digest FROM gateway_images WHERE image_id = %s FOR UPDATE", (image_id,)
            )
            row = cur.fetchone()
            if row is not None and row[0] == "add":
                if row[1] == spool:
                    return pending_steps(cur, image_id)  # our own first attempt committed
                same = " (the same image)" if digest and row[2] == digest else ""
                raise CatalogConflict(f"image_id {image_id} already exists{same}")
            if row is None:
                cur.execute(
                    "INSERT INTO gateway_images (image_id, op, spool, digest) VALUES (%s, 'add', %s, %s)",
                    (image_id, spool, digest or None),
                )
                self._insert_parts(cur, image_id, "add", names)
                return pending_steps(cur, image_id)
            cur.execute(
                "UPDATE gateway_images SET op = 'add', spool = %s, digest = %s, updated_at = now()"
                " WHERE image_id = %s",
                (spool, digest or None, image_id),
            )
            cur.execute(
                "UPDATE gateway_parts SET add_queued = true WHERE image_id = %s AND service = ANY(%s)"
                " RETURNING service",
                (image_id, names),
            )
            deleting = {r[0] for r in cur.fetchall()}
            self._insert_parts(cur, image_id, "add", [n for n in names if n not in deleting])
            return pending_steps(cur, image_id)

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
                self._log_removal(cur, image_id)  # no longer in the duplicate groups
            cur.execute("SELECT service FROM gateway_parts WHERE image_id = %s", (image_id,))
            names.update(r[0] for r in cur.fetchall())
            cur.execute(
                "INSERT INTO gateway_images (image_id, op, spool) VALUES (%s, 'delete', NULL)"
                " ON CONFLICT (image_id) DO UPDATE SET op = 'delete', spool = NULL, digest = NULL,"
                " updated_at = now()",
                (image_id,),
            )
            cur.execute("DELETE FROM gateway_parts WHERE image_id = %s", (image_id,))
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
            self._log_removal(cur, image_id)  # another image's links may name it already
            # stored nowhere: no link may keep it in the groups (an unknown id named by a link is
            # an imported image)
            cur.execute(
                "DELETE FROM gateway_links WHERE image_id = %s OR other_id = %s", (image_id, image_id)
            )
            cur.execute("DELETE FROM gateway_parts WHERE image_id = %s AND op = 'add'", (image_id,))
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
                        " next_try = now()"
                        " + make_interval(secs => LEAST(%s * power(2, LEAST(attempts, 30)), %s))"
                        " WHERE image_id = %s AND service = %s AND op = %s",
                        (error, self.max_attempts, self.backoff_s, self.backoff_max_s, *key),
                    )
                else:
                    cur.execute(
                        "UPDATE gateway_parts SET status = %s, last_error = %s"
                        " WHERE image_id = %s AND service = %s AND op = %s",
                        (status, error, *key),
                    )
            cur.execute(
                "SELECT count(*) FROM gateway_parts WHERE image_id = %s AND status IN ('pending', 'failed')",
                (image_id,),
            )
            if cur.fetchone()[0]:  # still to do, or kept for `ambience catalog retry` (with its upload)
                return None
            if row[0] == "delete":
                cur.execute("DELETE FROM gateway_images WHERE image_id = %s", (image_id,))
                return None
            if row[1] is not None:
                cur.execute(
                    "UPDATE gateway_images SET spool = NULL, updated_at = now() WHERE image_id = %s",
                    (image_id,),
                )
            return row[1]

        return self.db.run(run)

    # -- the retry worker ---------------------------------------------------------------------

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
        """Send parts that gave up again (all, or those of ``image_ids``), at once, with a fresh
        attempt count. Returns how many were re-queued."""

        def run(cur: Cursor) -> int:
            cur.execute(
                "UPDATE gateway_parts SET status = 'pending', attempts = 0, next_try = now()"
                " WHERE status = 'failed' AND (%s::bigint[] IS NULL OR image_id = ANY(%s::bigint[]))",
                (image_ids, image_ids),
            )
            return cur.rowcount

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
        """Per image: state (complete, pending, deleting) and its parts; unknown ids are absent."""

        def run(cur: Cursor) -> dict[int, dict[str, Any]]:
            cur.execute(
                "SELECT i.image_id, i.op, i.digest, p.service, p.op, p.add_queued, p.status, p.attempts,"
                " p.last_error FROM gateway_images i LEFT JOIN gateway_parts p USING (image_id)"
                " WHERE i.image_id = ANY(%s) ORDER BY i.image_id, p.service",
                (image_ids,),
            )
            out: dict[int, dict[str, Any]] = {}
            for image_id, op, digest, service, part_op, queued, status, attempts, error in cur.fetchall():
                entry = out.setdefault(image_id, {"op": op, "digest": digest, "parts": {}})
                if service is not None:
                    entry["parts"][service] = {
                        "op": part_op,
                        "add_queued": queued,
                        "status": status,
                        "attempts": attempts,
                        "error": error,
                    }
            for entry in out.values():
                states = {p["status"] for p in entry["parts"].values()}
                if entry["op"] == "delete":
                    entry["state"] = "deleting"
                elif PENDING in states:
                    entry["state"] = "pending"
                else:
                    entry["state"] = "failed" if FAILED in states else "complete"
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
            return {
                "images": images.get("add", 0),
                "deleting": images.get("delete", 0),
                "pending_parts": pending,
                "failed_parts": failed,
                "max_image_id": max_id,
            }

        return self.db.run(run)

    # -- what the gateway remembers per image (gateway/explore.py) --------------------------

    def record_info(self, image_id: int, info: dict[str, Any]) -> None:
        values = [info.get(c) for c in INFO_COLUMNS]
        columns = ", ".join(INFO_COLUMNS)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in INFO_COLUMNS)
        self.db.run(
            lambda cur: cur.execute(
                f"INSERT INTO gateway_image_info (image_id, {columns}) VALUES (%s{', %s' * len(values)})"
                f" ON CONFLICT (image_id) DO UPDATE SET {updates}",
                (image_id, *values),
            )
        )

    def info(self, image_ids: list[int] | None = None) -> dict[int, dict[str, Any]]:
        """Per image id (every image when ``image_ids`` is None): the recorded metadata."""

        def run(cur: Cursor) -> dict[int, dict[str, Any]]:
            query = f"SELECT image_id, {', '.join(INFO_COLUMNS)} FROM gateway_image_info"
            if image_ids is None:
                cur.execute(query)
            else:
                cur.execute(query + " WHERE image_id = ANY(%s)", (image_ids,))
            return {row[0]: dict(zip(INFO_COLUMNS, row[1:], strict=True)) for row in cur.fetchall()}

        return self.db.run(run)

    def capture_times(self) -> dict[int, float]:
        """Capture time (seconds, as recorded: camera-local time) of every image that has one."""

        def run(cur: Cursor) -> dict[int, float]:
            cur.execute(
                "SELECT image_id, extract(epoch FROM captured_at) FROM gateway_image_info"
                " WHERE captured_at IS NOT NULL"
            )
            return {row[0]: float(row[1]) for row in cur.fetchall()}

        return self.db.run(run)

    # -- the duplicate links and their change log (gateway/explore.py) -----------------------
    #
    # Every change of a kind's links, and every image that stops being an added one (begin_delete,
    # forget), is in a transaction that bumps the kind's generation (its row lock orders the
    # writers of a kind, so a generation is visible only once it and every earlier one are
    # committed) and logs the change under it. A gateway remembers the generation
    # its groups in memory reflect, and on each request applies the changes logged since: its own
    # and other replicas' alike.

    def _log_link_change(self, cur: Cursor, kind: str, change: str, image_id: int | None) -> int:
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
            (kind, generation - self.link_changes_kept),
        )
        return generation

    def _log_removal(self, cur: Cursor, image_id: int) -> None:
        """Log that ``image_id`` left the groups of every kind: it is no longer an added image (the
        groups hold added images only), or its links are gone."""
        for kind in LINK_KINDS:  # always in this order: two removals never wait on each other
            self._log_link_change(cur, kind, "remove", image_id)

    def add_links(self, kind: str, image_id: int, links: list[tuple[int, float]]) -> int:
        """Record an added image and its links (none is a change too: the image joins the groups);
        returns the kind's new generation."""

        def run(cur: Cursor) -> int:
            generation = self._log_link_change(cur, kind, "add", image_id)
            cur.executemany(
                "INSERT INTO gateway_links (kind, image_id, other_id, distance) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (kind, image_id, other_id) DO UPDATE SET distance = EXCLUDED.distance",
                [(kind, image_id, other, distance) for other, distance in links],
            )
            return generation

        return self.db.run(run)

    def replace_links(
        self, kind: str, links: list[tuple[int, int, float]], computed_from: int | None = None
    ) -> int:
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
            self._log_link_change(cur, kind, "rebuild", None)
            cur.execute("DELETE FROM gateway_links WHERE kind = %s", (kind,))
            cur.executemany(
                "INSERT INTO gateway_links (kind, image_id, other_id, distance) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [(kind, a, b, d) for a, b, d in kept],
            )
            return len(kept)

        return self.db.run(run)

    def links(self, kind: str) -> list[tuple[int, int, float]]:
        def run(cur: Cursor) -> list[tuple[int, int, float]]:
            cur.execute("SELECT image_id, other_id, distance FROM gateway_links WHERE kind = %s", (kind,))
            return [(a, b, float(d)) for a, b, d in cur.fetchall()]

        return self.db.run(run)

    def link_changes(self, kind: str, since: int) -> LinkChanges:
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

    def link_generation(self, kind: str) -> int:
        def run(cur: Cursor) -> int:
            cur.execute("SELECT generation FROM gateway_link_generations WHERE kind = %s", (kind,))
            return int(cur.fetchone()[0])

        return self.db.run(run)

    def link_snapshot(self, kind: str) -> LinkSnapshot:
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

    def links_of(self, kind: str, image_ids: list[int]) -> list[tuple[int, int, float]]:
        """The links of ``kind`` that touch ``image_ids``, as a snapshot holds them."""

        def run(cur: Cursor) -> list[tuple[int, int, float]]:
            cur.execute(
                "SELECT l.image_id, l.other_id, l.distance FROM gateway_links l"
                " WHERE l.kind = %s AND (l.image_id = ANY(%s) OR l.other_id = ANY(%s))"
                " AND NOT EXISTS (SELECT 1 FROM gateway_images g"
                " WHERE g.image_id IN (l.image_id, l.other_id) AND g.op <> 'add')",
                (kind, image_ids, image_ids),
            )
            return [(a, b, float(d)) for a, b, d in cur.fetchall()]

        return self.db.run(run)

    def forget_info(self, image_id: int) -> None:
        """Drop an image's metadata and links (it is being deleted)."""

        def run(cur: Cursor) -> None:
            self._log_removal(cur, image_id)
            cur.execute("DELETE FROM gateway_image_info WHERE image_id = %s", (image_id,))
            cur.execute(
                "DELETE FROM gateway_links WHERE image_id = %s OR other_id = %s", (image_id, image_id)
            )

        self.db.run(run)

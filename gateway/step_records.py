"""The steps of the write ledger (``gateway_steps``): what follows an add, recorded with it.

An add's steps (gateway/after_add.py declares them) are inserted pending, in their order, in the
add's own transaction; they become due once the request has sent the add to the services
(:func:`make_due`), or after :data:`STEPS_DUE_AFTER_S` when the gateway died before that. Each
outcome a worker reports is recorded only while its claim (gateway/backlog.py) is still the
worker's own. The catalog (gateway/catalog.py) calls these inside its transactions, with the
image's row locked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.common.postgres.database import Cursor

PENDING = "pending"
#: Seconds after which the steps of an add are due even when its request never recorded the
#: services' answers (the gateway died meanwhile): a worker never claims steps an add in flight
#: holds the image's lock for.
STEPS_DUE_AFTER_S = 30.0
#: The next try after a failed attempt: the backoff doubling per attempt up to its cap (parameters:
#: backoff, cap), for the parts and the steps alike.
BACKOFF_SQL = "now() + make_interval(secs => LEAST(%s * power(2, LEAST(attempts, 30)), %s))"


@dataclass(frozen=True)
class StepDecl:
    """One step that follows every add (gateway/after_add.py), as the ledger records it: its name,
    its place in the order, and whether it reads the upload (the spool file stays until it is
    done)."""

    name: str
    uses_upload: bool


def insert(cur: Cursor, image_id: int, steps: Sequence[StepDecl]) -> None:
    """The steps that follow this add, pending in their order (any left from an earlier add of the
    id replaced), due once the request has sent the add (:func:`make_due`), or after
    :data:`STEPS_DUE_AFTER_S` when the gateway died before that."""
    cur.execute("DELETE FROM gateway_steps WHERE image_id = %s", (image_id,))
    cur.executemany(
        "INSERT INTO gateway_steps (image_id, step, rank, uses_upload, next_try)"
        " VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))",
        [(image_id, step.name, rank, step.uses_upload, STEPS_DUE_AFTER_S) for rank, step in enumerate(steps)],
    )


def make_due(cur: Cursor, image_id: int) -> None:
    """The add was sent to the services: its steps not yet tried may run now."""
    cur.execute(
        "UPDATE gateway_steps SET next_try = now() WHERE image_id = %s AND status = 'pending'"
        " AND attempts = 0 AND next_try > now()",
        (image_id,),
    )


def reading_upload(cur: Cursor, image_id: int) -> bool:
    """Whether a pending step still reads the image's upload (its spool file stays)."""
    cur.execute(
        "SELECT count(*) FROM gateway_steps WHERE image_id = %s AND uses_upload AND status = 'pending'",
        (image_id,),
    )
    return bool(cur.fetchone()[0])


def record_outcome(
    cur: Cursor,
    image_id: int,
    step: str,
    outcome: str,
    error: str | None,
    wait_s: float | None,
    token: str | None,
    backoff: tuple[float, float, int],
) -> bool:
    """Record one step's ``outcome`` (see :meth:`gateway.catalog.Catalog.record_step`), releasing
    its claim; ``backoff``: (first backoff, its cap, attempts before ``failed``). Returns whether a
    finished outcome was recorded: false for ``released``, and when the claim is no longer
    ``token``'s (it ran out and another worker took the step)."""
    backoff_s, backoff_max_s, max_attempts = backoff
    where = " WHERE image_id = %s AND step = %s AND (%s::uuid IS NULL OR claim_token = %s::uuid)"
    key = (image_id, step, token, token)
    if outcome == "released":  # not run: another pass takes it
        cur.execute("UPDATE gateway_steps SET claimed_until = NULL" + where, key)
        return False
    if outcome == "waiting":
        cur.execute(
            "UPDATE gateway_steps SET claimed_until = NULL, next_try = now() + make_interval(secs => %s)"
            + where,
            (wait_s if wait_s is not None else backoff_s, *key),
        )
    elif outcome == PENDING:
        cur.execute(
            "UPDATE gateway_steps SET attempts = attempts + 1, last_error = %s, claimed_until = NULL,"
            " status = CASE WHEN attempts + 1 >= %s THEN 'failed' ELSE 'pending' END,"
            f" next_try = {BACKOFF_SQL}" + where,
            (error, max_attempts, backoff_s, backoff_max_s, *key),
        )
    else:
        cur.execute(
            "UPDATE gateway_steps SET status = %s, last_error = %s, claimed_until = NULL" + where,
            (outcome, error, *key),
        )
    return bool(cur.rowcount)

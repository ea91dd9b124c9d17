"""The people grouping in this gateway's memory, following the records in PostgreSQL.

The database is the truth; each gateway process (replica) keeps a
:class:`~gateway.people.clustering.PeopleGrouping` (the faces' descriptors in an exact FAISS index,
their persons, the rejections) loaded from it and brought up to date before each use: every
written row carries the generation that wrote it and every removal is logged under its generation
(gateway/people/schema.py), so what changed since this copy's generation is a few indexed queries.
A copy too far behind (the removals it missed are no longer logged) is loaded whole.

A write (:meth:`PeopleMemory.write`) runs in one transaction that first locks the state row (one
writer at a time across every replica), brings the copy up to date under that lock, applies the
operation to it, and writes the records it changed with the next generation. When the transaction
fails the copy may hold what was not written: it is dropped and loaded whole at the next use.
Inside one process a lock serialises every use of the copy (it is not thread-safe).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from gateway.people import store
from gateway.people.clustering import PeopleGrouping
from gateway.people.faces import Changes, GroupingSettings
from gateway.people.store import Records, State
from services.common.postgres.database import Cursor, SqlRunner

log = logging.getLogger("ambience.gateway")

T = TypeVar("T")

#: Extra writes of an operation, in its transaction, given the generation it writes under.
Extra = Callable[[Cursor, int], None]


class PeopleMemory:
    def __init__(self, db: SqlRunner, settings: GroupingSettings) -> None:
        self.db = db
        self.settings = settings
        self._grouping: PeopleGrouping | None = None
        self._generation = -1
        self._lock = threading.Lock()
        #: How the copy was brought up to date: loaded ``whole`` or by applying ``changes``.
        self.refreshes = {"whole": 0, "changes": 0}

    # -- bringing the copy up to date -----------------------------------------------------------------

    def _catch_up(self, cur: Cursor, state: State) -> PeopleGrouping:
        grouping = self._grouping
        if grouping is not None and self._generation == state.generation:
            return grouping
        if grouping is None or self._generation < state.removals_from or self._generation > state.generation:
            started = time.perf_counter()
            records = store.read_all(cur)
            grouping = PeopleGrouping(
                self.settings, records.faces, records.descriptors, records.people, records.rejections
            )
            self.refreshes["whole"] += 1
            log.info("people: %d faces loaded in %.2f s", len(grouping), time.perf_counter() - started)
        else:
            self._grouping = None  # until the changes are applied whole
            apply(grouping, store.read_since(cur, self._generation, grouping.has_face))
            self.refreshes["changes"] += 1
        grouping.next_person = max(grouping.next_person, state.next_person)
        self._grouping, self._generation = grouping, state.generation
        return grouping

    def read(self, use: Callable[[PeopleGrouping], T]) -> T:
        """``use`` of the copy as the database has it now (one consistent snapshot read)."""

        def run(cur: Cursor) -> PeopleGrouping:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return self._catch_up(cur, store.read_state(cur))

        with self._lock:
            try:
                grouping = self.db.run(run)
            except BaseException:
                self._grouping = None
                raise
            return use(grouping)

    # -- writing ------------------------------------------------------------------------------------

    def write(
        self,
        operation: Callable[[PeopleGrouping], Changes],
        before: Extra | None = None,
        retry_pass: bool = False,
    ) -> Changes:
        """Apply ``operation`` to the copy brought up to date under the writers' lock and write what
        it changed; ``before``: writes of the same transaction made first (the new faces' rows).
        KeyError and ValueError from ``operation`` (an unknown person or face: the clustering
        checks before it changes anything) leave the copy as it was; any other failure drops it.
        ``retry_pass``: record the generation this leaves as the last retry pass's."""

        refused: list[BaseException] = []

        def run(cur: Cursor) -> tuple[Changes, int]:
            state = store.read_state(cur, lock=True)
            grouping = self._catch_up(cur, state)
            try:
                changes = operation(grouping)
            except (KeyError, ValueError) as exc:
                refused.append(exc)
                raise
            except BaseException:
                self._grouping = None
                raise
            if not changes and not retry_pass:
                return changes, state.generation
            generation = state.generation + 1
            self._grouping = None  # until the commit is known: what is in memory is not written yet
            if before is not None:
                before(cur, generation)
            store.persist(cur, changes, generation)
            store.write_state(cur, generation, grouping.next_person, generation if retry_pass else None)
            self._grouping = grouping
            return changes, generation

        with self._lock:
            try:
                changes, generation = self.db.run(run)
            except BaseException as exc:
                # A failed commit may leave the copy ahead of the database: load it again.
                if not (refused and exc is refused[-1]):
                    self._grouping = None
                raise
            self._generation = generation
            return changes

    def state(self) -> State:
        return self.db.run(store.read_state)


def apply(grouping: PeopleGrouping, records: Records) -> None:
    """What another writer wrote, as it is: people first (faces name them), removed faces before
    the faces now there (a key may come back), people removed last (they hold no faces then)."""
    grouping.put_people(records.people)
    grouping.drop_faces(records.removed_faces)
    grouping.put_faces(records.faces, records.descriptors)
    grouping.drop_rejections(records.removed_rejections)
    grouping.put_rejections(records.rejections)
    grouping.drop_people(records.removed_people)

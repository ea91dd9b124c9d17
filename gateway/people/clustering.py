"""People: the stored faces grouped into persons, with the user's decisions kept.

:class:`PeopleGrouping` is what the gateway holds: the face table (gateway/people/faces.py), the
grouping rules (gateway/people/rules.py, where the rules are explained) and, here, the decisions a
person makes: move a face, "not this person", merge, name, hide. Each returns the
:class:`~gateway.people.faces.Changes` to persist.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gateway.people.faces import NO_PERSON, Changes, FaceKey, Rejection, face_key_id, key_of
from gateway.people.rules import GroupingRules


class PeopleGrouping(GroupingRules):
    """Faces, their descriptors, people and rejections; the grouping rules as methods.

    Rows: face ``i`` has descriptor ``vectors[i]``, person ``person[i]`` (NO_PERSON when
    unassigned) and ``pinned[i]``; the FAISS index holds the descriptors under the faces' packed
    ids. Not thread-safe: the gateway serialises operations (one writer).
    """

    # -- decisions -------------------------------------------------------------------------------------------

    def new_person(self, name: str | None = None) -> tuple[int, Changes]:
        changes = Changes()
        person_id = self._new_person(changes)
        if name is not None:
            self.people[person_id].name = name
            changes.people[person_id] = replace(self.people[person_id])
        return person_id, changes

    def move(self, key: FaceKey, person_id: int) -> Changes:
        """ "This face is this person": pinned there (a rejection of that person is withdrawn)."""
        if person_id not in self.people or self.people[person_id].merged_into is not None:
            raise KeyError(f"no person {person_id}")
        changes = Changes()
        row = self._row(key)
        previous = int(self.person[row])
        rejected = self.rejected.get(int(self.ids[row]), set())
        if person_id in rejected:
            rejected.discard(person_id)
            changes.rejections_removed.add(Rejection(*key, person_id))
        self._set_person(row, person_id, changes, pinned=True)
        if previous not in (NO_PERSON, person_id):
            self._drop_empty_automatic(changes)
        return changes

    def reject(self, key: FaceKey, person_id: int) -> Changes:
        """ "This face is not this person": recorded; the face leaves the person (and its pin) and
        is placed again by the rule, never into that person."""
        changes = Changes()
        row = self._row(key)
        self.rejected.setdefault(int(self.ids[row]), set()).add(person_id)
        changes.rejections_added.add(Rejection(*key, person_id))
        if self.person[row] == person_id:
            self._set_person(row, NO_PERSON, changes, pinned=False)
            self._place(row, changes)
            self._drop_empty_automatic(changes)
        return changes

    def withdraw(self, key: FaceKey, person_id: int) -> Changes:
        """A "not this person" taken back (nothing moves until the next grouping)."""
        changes = Changes()
        rejected = self.rejected.get(face_key_id(*key), set())
        if person_id in rejected:
            rejected.discard(person_id)
            changes.rejections_removed.add(Rejection(*key, person_id))
        return changes

    def merge(self, source: int, target: int) -> Changes:
        """Two people are one: the faces of both are pinned into ``target``; ``source`` is
        recorded as merged into it. A face that rejected either now rejects the merged person (and
        one of them that did leaves it, placed again by the rule)."""
        if source == target:
            raise ValueError("a person cannot be merged into itself")
        for person_id in (source, target):
            if person_id not in self.people or self.people[person_id].merged_into is not None:
                raise KeyError(f"no person {person_id}")
        changes = Changes()
        # A face of either that was told it is not the other (or not its own person, and joined the
        # other since) cannot be pinned into the merged person: it is placed again by the rule.
        released = []
        for row in np.nonzero(np.isin(self.person, [source, target]))[0].tolist():
            if self.rejected.get(int(self.ids[row]), set()) & {source, target}:
                self._set_person(row, NO_PERSON, changes, pinned=False)
                released.append(row)
            else:
                self._set_person(row, target, changes, pinned=True)
        for face_id, persons in self.rejected.items():
            if source in persons:
                persons.discard(source)
                persons.add(target)
                changes.rejections_removed.add(Rejection(*key_of(face_id), source))
                changes.rejections_added.add(Rejection(*key_of(face_id), target))
        merged = self.people[source]
        if merged.name is not None and self.people[target].name is None:
            self.people[target].name = merged.name
            changes.people[target] = replace(self.people[target])
        merged.merged_into = target
        changes.people[source] = replace(merged)
        for row in released:
            if self.person[row] == NO_PERSON:
                self._place(row, changes)
        # Links to the merged id follow merged_into; the record stays, holding no faces.
        return changes

    def rename(self, person_id: int, name: str | None) -> Changes:
        return self._update_person(person_id, name=name)

    def hide(self, person_id: int, hidden: bool = True) -> Changes:
        return self._update_person(person_id, hidden=hidden)

    def _update_person(self, person_id: int, **values: object) -> Changes:
        person = self.people.get(person_id)
        if person is None or person.merged_into is not None:
            raise KeyError(f"no person {person_id}")
        for name, value in values.items():
            setattr(person, name, value)
        changes = Changes()
        changes.people[person_id] = replace(person)
        return changes

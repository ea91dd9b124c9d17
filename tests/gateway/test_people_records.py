"""The people records in real PostgreSQL without HTTP (gateway/people/memory.py, store.py): faces
written and placed, decisions, counts and covers, deletes, and two gateway processes (two
memories over one database) following each other's writes, whole and by their change logs."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from ambience_support.pg import TestServer
from gateway.people import queries, store
from gateway.people.clustering import PeopleGrouping
from gateway.people.faces import Changes, GroupingSettings
from gateway.people.memory import PeopleMemory
from gateway.people.schema import COMPONENT, MIGRATIONS
from gateway.people.store import NewFace
from services.common.postgres.database import PostgresComponent, PostgresSettings


@pytest.fixture
def db(pg_server: TestServer) -> Iterator[PostgresComponent]:
    postgres = PostgresComponent(
        PostgresSettings(dsn=pg_server.new_database("people")), {COMPONENT: MIGRATIONS}, "test-people"
    )
    postgres.open()
    yield postgres
    postgres.close()


def cluster(seed: int, n: int, spread: float = 0.08) -> np.ndarray:
    """``n`` descriptors around one random centre (a person): within ``spread`` x 2 of each other."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=128).astype(np.float32)
    centre *= 3.0 / np.linalg.norm(centre)  # people ~4 apart, far beyond max_distance
    noise = rng.normal(size=(n, 128)).astype(np.float32)
    noise *= spread / np.linalg.norm(noise, axis=1, keepdims=True)
    return centre + noise


def add_image(memory: PeopleMemory, image_id: int, vectors: np.ndarray) -> Changes:
    faces = [
        NewFace(image_id, i, (10.0 * i, 0.0, 10.0 * i + 50 + i, 60.0), 1.0, v) for i, v in enumerate(vectors)
    ]

    def operation(grouping: PeopleGrouping) -> Changes:
        if any(grouping.has_face(f.key) for f in faces):
            return Changes()
        return grouping.add([f.key for f in faces], np.stack([f.descriptor for f in faces]))

    return memory.write(operation, lambda cur, g: store.insert_faces(cur, faces, g))


def persons(memory: PeopleMemory) -> dict[tuple[int, int], int | None]:
    return memory.read(lambda g: {f.key: f.person_id for f in g.faces()})


def test_faces_are_placed_recorded_and_counted(db: PostgresComponent) -> None:
    memory = PeopleMemory(db, GroupingSettings())
    a, b = cluster(1, 4), cluster(2, 3)
    for i in range(4):
        add_image(memory, 10 + i, a[i : i + 1])
    add_image(memory, 20, b[:1])
    add_image(memory, 21, b[1:2])
    found = persons(memory)
    # the third face of a makes a core point: all four join one person; b waits with two faces
    assert len({found[(10 + i, 0)] for i in range(4)}) == 1 and found[(10, 0)] is not None
    assert found[(20, 0)] is None and found[(21, 0)] is None
    add_image(memory, 22, b[2:3])
    found = persons(memory)
    assert found[(20, 0)] == found[(21, 0)] == found[(22, 0)] is not None
    listed = queries.list_people(db, False, 10, None)
    assert [(p["faces"], p["images"]) for p in listed["people"]] == [(4, 4), (3, 3)]
    first = listed["people"][0]
    assert first["cover"]["image_id"] in range(10, 14) and len(first["cover"]["box"]) == 4
    # adding the same image again (a step run twice) changes nothing
    assert not add_image(memory, 10, a[:1])
    # paging: one at a time, largest first
    page = queries.list_people(db, False, 1, None)
    assert page["people"][0]["faces"] == 4 and page["next"]
    faces, person_id = (int(v) for v in page["next"].split("."))
    assert queries.list_people(db, False, 1, (faces, person_id))["people"][0]["faces"] == 3


def test_decisions_counts_and_deletes(db: PostgresComponent) -> None:
    memory = PeopleMemory(db, GroupingSettings())
    a, b = cluster(3, 4), cluster(4, 4)
    for i in range(4):
        add_image(memory, 100 + i, a[i : i + 1])
        add_image(memory, 200 + i, b[i : i + 1])
    pa, pb = persons(memory)[(100, 0)], persons(memory)[(200, 0)]
    assert pa is not None and pb is not None and pa != pb
    memory.write(lambda g: g.rename(pa, "Ada"))
    memory.write(lambda g: g.hide(pb))
    assert [p["name"] for p in queries.list_people(db, False, 10, None)["people"]] == ["Ada"]
    assert len(queries.list_people(db, True, 10, None)["people"]) == 2
    memory.write(lambda g: g.reject((101, 0), pa))
    memory.write(lambda g: g.merge(pb, pa))
    assert queries.person(db, pb)["person_id"] == pa  # a merged id answers for its target
    assert queries.person(db, pa)["faces"] == 7  # 3 of a (one rejected) + 4 of b
    info = queries.faces_of_images(db, [101, 200])
    assert info[101][0]["person_id"] is None and info[200][0]["person_id"] == pa
    # every decision survives the full regrouping
    memory.write(PeopleGrouping.regroup)
    found = persons(memory)
    assert found[(101, 0)] is None
    assert {found[(i, 0)] for i in (100, 102, 103, 200, 201, 202, 203)} == {pa}
    # a deleted image's faces go, with its rejections, and the counts follow
    memory.write(lambda g: g.remove_images([101, 200]))
    assert queries.person(db, pa)["faces"] == 6
    assert queries.faces_of_images(db, [101, 200]) == {}
    assert db.run(lambda cur: cur.execute("SELECT count(*) FROM people_rejections") or cur.fetchone())[0] == 0


def test_two_processes_follow_each_other(db: PostgresComponent) -> None:
    first, second = PeopleMemory(db, GroupingSettings()), PeopleMemory(db, GroupingSettings())
    a, b = cluster(5, 5), cluster(6, 3)
    for i in range(3):
        add_image(first, 300 + i, a[i : i + 1])
    # the second loads whole, then writes after the first
    add_image(second, 303, a[3:4])
    assert second.refreshes["whole"] == 1
    add_image(first, 304, a[4:5])  # the first applies the second's change, then writes
    assert first.refreshes["changes"] >= 1
    assert persons(first) == persons(second)
    person = persons(first)[(300, 0)]
    # a decision on one, a rule on the other: the merge the second made is known to the first
    for i in range(3):
        add_image(second, 400 + i, b[i : i + 1])
    other = persons(second)[(400, 0)]
    second.write(lambda g: g.merge(other, person))
    moved = first.write(lambda g: g.move((401, 0), person))
    assert moved.faces[(401, 0)].person_id == person
    first.write(lambda g: g.remove_images([300]))
    assert persons(first) == persons(second)
    assert (300, 0) not in persons(second)
    # new person ids never repeat across processes
    before = first.read(lambda g: g.next_person)
    second.write(lambda g: g.new_person("x")[1])
    assert second.read(lambda g: max(g.people)) >= before


def test_a_process_too_far_behind_loads_whole(db: PostgresComponent, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "REMOVALS_KEPT", 2)
    first, second = PeopleMemory(db, GroupingSettings()), PeopleMemory(db, GroupingSettings())
    a = cluster(7, 6)
    for i in range(3):
        add_image(first, 500 + i, a[i : i + 1])
    assert second.read(len) == 3
    for i in range(3, 6):
        add_image(first, 500 + i, a[i : i + 1])
    first.write(lambda g: g.remove_images([500, 501]))
    wholes = second.refreshes["whole"]
    assert second.read(len) == 4
    assert second.refreshes["whole"] == wholes + 1
    assert persons(first) == persons(second)

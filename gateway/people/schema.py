"""The people tables in PostgreSQL, their own migration history (component ``people``).

- ``people_faces``: every face the gateway knows, ``(image_id, face_index)`` as the faces service
  numbers them, its box (pixels of the full photo, as displayed), size and score, the person it is
  in (NULL while unassigned), whether a decision pinned it there, and its 128-d descriptor (float32,
  little-endian). The descriptors are kept here rather than fetched from the faces service: the
  grouping is rebuilt in memory by every gateway process from this database alone (one query, not
  a paging of the service that its trimmed change log may force to start over), the faces and the
  people that hold them change in one transaction, and the people stay readable and editable while
  the faces service is down. 512 bytes a face: 51 MB for 100,000 faces.
- ``people_face_crops``: a small WebP per face for the page, made at add time from the upload.
- ``people``: every person, with its name, hidden flag, the person it was merged into, its counts
  of faces and images and its cover face (kept up to date with every change).
- ``people_rejections``: "this face is not that person".
- ``people_state``: one row: the generation of the people records (each write bumps it under the
  row's lock, which serialises the writers of every gateway replica), the next person id, and the
  generation of the last retry pass. Every written row carries the generation that wrote it;
  ``people_removals`` logs what a write removed, so a replica brings its memory up to date by
  reading what changed since its own generation (gateway/people/memory.py).

Other modules rely on ``people_faces (image_id, face_index, person_id)`` and ``people (person_id,
name, hidden)``: the library filters images by the people in them.
"""

from __future__ import annotations

from services.common.postgres.database import Migration

COMPONENT = "people"

MIGRATIONS = [
    Migration(
        1,
        "people: faces, persons, rejections, crops and the generation log replicas follow",
        """
        CREATE TABLE people_state (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            generation bigint NOT NULL DEFAULT 0,
            next_person bigint NOT NULL DEFAULT 1,
            removals_from bigint NOT NULL DEFAULT 0,
            retried_at bigint NOT NULL DEFAULT -1
        );
        INSERT INTO people_state DEFAULT VALUES;
        CREATE TABLE people (
            person_id bigint PRIMARY KEY,
            name text,
            hidden boolean NOT NULL DEFAULT false,
            merged_into bigint,
            faces integer NOT NULL DEFAULT 0,
            images integer NOT NULL DEFAULT 0,
            cover_image_id bigint,
            cover_face_index integer,
            generation bigint NOT NULL
        );
        CREATE INDEX people_largest ON people (faces DESC, person_id) WHERE merged_into IS NULL;
        CREATE INDEX people_generation ON people (generation);
        CREATE TABLE people_faces (
            image_id bigint NOT NULL,
            face_index integer NOT NULL,
            person_id bigint,
            pinned boolean NOT NULL DEFAULT false,
            box real[] NOT NULL,
            size real NOT NULL,
            score real NOT NULL,
            descriptor bytea NOT NULL,
            generation bigint NOT NULL,
            PRIMARY KEY (image_id, face_index)
        );
        CREATE INDEX people_faces_person ON people_faces (person_id, image_id);
        CREATE INDEX people_faces_generation ON people_faces (generation);
        CREATE TABLE people_face_crops (
            image_id bigint NOT NULL,
            face_index integer NOT NULL,
            webp bytea NOT NULL,
            etag text NOT NULL,
            PRIMARY KEY (image_id, face_index)
        );
        CREATE TABLE people_rejections (
            image_id bigint NOT NULL,
            face_index integer NOT NULL,
            person_id bigint NOT NULL,
            generation bigint NOT NULL,
            PRIMARY KEY (image_id, face_index, person_id)
        );
        CREATE INDEX people_rejections_generation ON people_rejections (generation);
        CREATE TABLE people_removals (
            generation bigint NOT NULL,
            what text NOT NULL CHECK (what IN ('face', 'person', 'rejection')),
            image_id bigint,
            face_index integer,
            person_id bigint
        );
        CREATE INDEX people_removals_generation ON people_removals (generation);
        """,
    )
]

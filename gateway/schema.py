"""The gateway's tables in PostgreSQL, one numbered history (component ``gateway``): applied once
each, in order, at start-up (services.common.postgres.database).

Who owns which table: the write ledger (``gateway_images``, ``gateway_parts``, ``gateway_steps``) is
:mod:`gateway.catalog`; what is known of each image (``gateway_image_info``) is
:mod:`gateway.image_facts`; the duplicate links, their generations and change log
(``gateway_links``, ``gateway_link_generations``, ``gateway_link_changes``) are
:mod:`gateway.duplicates.links`. Thumbnails and the page's sessions keep their own components.
"""

from __future__ import annotations

from services.common.postgres.database import Migration

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
        "the steps that follow an add, recorded with it and done by background workers",
        """
        ALTER TABLE gateway_images ADD COLUMN file_name text;
        CREATE TABLE gateway_steps (
            image_id bigint NOT NULL REFERENCES gateway_images ON DELETE CASCADE,
            step text NOT NULL,
            rank integer NOT NULL,
            uses_upload boolean NOT NULL,
            status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
            attempts integer NOT NULL DEFAULT 0,
            next_try timestamptz NOT NULL DEFAULT now(),
            claimed_until timestamptz,
            claimed_by text,
            last_error text,
            PRIMARY KEY (image_id, step)
        );
        CREATE INDEX gateway_steps_due ON gateway_steps (image_id, rank) WHERE status = 'pending';
        """,
    ),
    Migration(
        9,
        "photo or video, its format and duration, the two halves of a Live Photo "
        "(gateway/live_photos.py); the facts read from the upload's header, recorded with the add",
        r"""
        ALTER TABLE gateway_image_info ADD COLUMN kind text;
        ALTER TABLE gateway_image_info ADD COLUMN format text;
        ALTER TABLE gateway_image_info ADD COLUMN duration_s double precision;
        ALTER TABLE gateway_image_info ADD COLUMN live_photo_of bigint;
        CREATE INDEX gateway_image_info_base_name
            ON gateway_image_info (lower(regexp_replace(file_name, '\.[^./\\]*$', '')));
        ALTER TABLE gateway_images ADD COLUMN facts jsonb;
        """,
    ),
    Migration(
        10,
        "a token per claim of an image's steps: a worker whose claim ran out records nothing",
        "ALTER TABLE gateway_steps ADD COLUMN claim_token uuid;",
    ),
    Migration(
        11,
        "the gateway that took an add (it holds the upload, its settings chose the add): the image's "
        "steps go to it first",
        "ALTER TABLE gateway_images ADD COLUMN added_by text;",
    ),
]

"""The duplicate workflow's tables (component ``duplicates``, applied after the gateway's own):

- ``gateway_duplicate_decisions``: what a person decided about groups (gateway/duplicates/decided.py)
  and the groups resolved (gateway/duplicates/resolve.py), kept by
  :class:`gateway.duplicates.decisions.PostgresDecisionStore`;
- ``gateway_image_sharpness``: the sharpness of each image's thumbnail
  (gateway/duplicates/sharpness.py);
- a third kind of links, ``bursts`` (stacks: gateway/duplicates/bursts.py), and a ``decision``
  change in the links' change log, so every replica's groups take a decision in
  (gateway/duplicates/links.py, follower.py);
- an index of the exposure time, which a burst's frames are looked up by.
"""

from __future__ import annotations

from services.common.postgres.database import Migration

COMPONENT = "duplicates"

MIGRATIONS = [
    Migration(
        1,
        "decisions about duplicate groups, sharpness per image, bursts as a kind of links",
        """
        CREATE TABLE gateway_duplicate_decisions (
            id bigserial PRIMARY KEY,
            decision text NOT NULL CHECK (decision IN ('not_duplicates', 'duplicates', 'resolved')),
            kind text CHECK (kind IN ('copies', 'similar', 'bursts')),
            image_ids bigint[] NOT NULL,
            detail jsonb,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX gateway_duplicate_decisions_kind ON gateway_duplicate_decisions (kind);
        CREATE TABLE gateway_image_sharpness (
            image_id bigint PRIMARY KEY,
            sharpness double precision NOT NULL
        );
        ALTER TABLE gateway_links DROP CONSTRAINT gateway_links_kind_check;
        ALTER TABLE gateway_links ADD CONSTRAINT gateway_links_kind_check
            CHECK (kind IN ('copies', 'similar', 'bursts'));
        ALTER TABLE gateway_link_generations DROP CONSTRAINT gateway_link_generations_kind_check;
        ALTER TABLE gateway_link_generations ADD CONSTRAINT gateway_link_generations_kind_check
            CHECK (kind IN ('copies', 'similar', 'bursts'));
        INSERT INTO gateway_link_generations (kind, generation) VALUES ('bursts', 0);
        ALTER TABLE gateway_link_changes DROP CONSTRAINT gateway_link_changes_change_check;
        ALTER TABLE gateway_link_changes ADD CONSTRAINT gateway_link_changes_change_check
            CHECK (change IN ('add', 'remove', 'rebuild', 'decision'));
        CREATE INDEX gateway_image_info_exposure
            ON gateway_image_info ((coalesce(exposed_at, captured_at)));
        """,
    ),
]

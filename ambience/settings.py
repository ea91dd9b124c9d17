"""``ambience settings``: every setting of every service as markdown (the README's settings section)."""

from __future__ import annotations

import argparse

from services.common.settings import CommonSettings, markdown_table
from services.registry import SERVICES


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub.add_parser("settings", help="print every setting (env var, default, meaning) as markdown")


def run(_args: argparse.Namespace) -> int:
    print(settings_markdown())
    return 0


def settings_markdown() -> str:
    """Every setting of every service, one table per service."""
    from gateway.settings import GatewaySettings
    from services.common.postgres.database import PostgresSettings

    parts = ["### Shared", "", markdown_table([CommonSettings, PostgresSettings])]
    for info in SERVICES.values():
        parts += ["", f"### {info.name}", "", markdown_table([info.settings_class()])]
    parts += ["", "### gateway", "", markdown_table([GatewaySettings])]
    return "\n".join(parts)

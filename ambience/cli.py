"""The ``ambience`` command line: each command is a module with ``add_parser(sub)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from ambience import (
    catalog,
    groups,
    import_folder,
    index,
    models,
    people,
    places,
    search,
    serve,
    settings,
    thumbnails,
    train,
)

#: In the order ``ambience --help`` lists them.
COMMANDS: dict[str, ModuleType] = {
    "serve": serve,
    "settings": settings,
    "import": import_folder,
    "index": index,
    "search": search,
    "catalog": catalog,
    "models": models,
    "train": train,
    "thumbnails": thumbnails,
    "groups": groups,
    "people": people,
    "places": places,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ambience", description="Self-hosted image retrieval suite")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(COMMANDS[args.command].run(args))


if __name__ == "__main__":
    sys.exit(main())

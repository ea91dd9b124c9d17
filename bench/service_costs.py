"""Part 3 of ``bench.inference_bench``: what each service costs per image, and its memory.

Each service runs in a fresh process (``python -m bench.service_costs SERVICE``), built the way its
app builds it (settings from the environment, ``load()``), and adds a mix of pictures the way an
add does (decode + feature extraction; nothing stored): caltech101-dev objects (about 300x200) and
the shared photos (1600 px), three of one to one of the other, so the inputs vary in size as a real
library's do. Reported per service: wall and CPU milliseconds per image (the mean, after one image
of warm-up: a 2-core machine shared by every service pays CPU time, not wall time), and the
process's resident memory after start-up (imports and model), after the first image and after all
of them, plus its peak. Memory that keeps growing from the first image to the last is an allocator
holding on to something per input shape.

Model services use random weights of the stack's models (compute and memory do not depend on the
values); settings come from the environment of the parent (``AMBIENCE_*``) plus :data:`STACK`.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: The offline stack's services and the settings that make them so (random weights: no download).
STACK: dict[str, dict[str, str]] = {
    "phash": {},
    "color": {},
    "local_features": {"AMBIENCE_LOCAL_FEATURES_DESCRIPTOR": "rootsift"},
    "global_features": {
        "AMBIENCE_GLOBAL_FEATURES_MODEL": "tf_efficientnet_lite0",
        "AMBIENCE_GLOBAL_FEATURES_WEIGHTS": "random",
    },
    "ocr": {},
    "image_text": {"AMBIENCE_IMAGE_TEXT_WEIGHTS": "random"},
}
SMALL_ENV: dict[str, dict[str, str]] = {
    "image_text": {
        "AMBIENCE_IMAGE_TEXT_MODEL": "tiny-clip",
        "AMBIENCE_IMAGE_TEXT_MODEL_CONFIG_PATH": str(REPO / "tests" / "models" / "tiny-clip.json"),
    },
}


def rss_mb() -> float:
    """This process's resident memory now (MB)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def pss_mb() -> tuple[float, float]:
    """Proportional set size (shared library pages split between the processes mapping them) and
    its anonymous part (the process's own heap), MB."""
    fields = {}
    with open("/proc/self/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if parts[0] in ("Pss:", "Pss_Anon:"):
                fields[parts[0]] = int(parts[1]) / 1e3
    return fields.get("Pss:", 0.0), fields.get("Pss_Anon:", 0.0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def picture_files(n: int) -> list[Path]:
    """``n`` pictures of varied sizes: three caltech101-dev objects (every class in turn) per shared
    photo; whatever exists of the two folders."""
    from ambience_support.photos import PHOTOS, photo_paths

    caltech_root = Path(os.environ.get("AMBIENCE_TEST_CALTECH", REPO.parent / "shared" / "caltech101-dev"))
    classes = sorted(p for p in caltech_root.iterdir() if p.is_dir()) if caltech_root.is_dir() else []
    per_class = [sorted(c.glob("*.jpg")) for c in classes]
    caltech = [files[i] for i in range(60) for files in per_class if i < len(files)]
    photos = photo_paths(PHOTOS)
    out: list[Path] = []
    ci = pi = 0
    while len(out) < n and (ci < len(caltech) or pi < len(photos)):
        if (len(out) % 4 == 3 and pi < len(photos)) or ci >= len(caltech):
            out.append(photos[pi])
            pi += 1
        else:
            out.append(caltech[ci])
            ci += 1
    return out


def build_extractor(service: str) -> tuple[Any, dict[str, Any]]:
    """The service's add path without storing: a function of the file's bytes, and what it runs."""
    if service == "ocr":
        from services.ocr.service import OcrService, OcrSettings

        ocr = OcrService(OcrSettings())
        ocr.load_recognizer()
        return ocr.read, {"model": ocr.recognizer.model_id if ocr.recognizer else ""}
    import tempfile

    from services.registry import new_feature

    feature = new_feature(service, Path(tempfile.mkdtemp(prefix="ambience-cost-")))
    feature.load()
    info: dict[str, Any] = {}
    session = getattr(feature, "session", None)
    if session is not None:
        info = {"model": session.model_id, "runtime": getattr(session, "runtime", "")}
    return feature.extract, info


def threads_in_use() -> dict[str, int]:
    """Thread counts the libraries were left with (torch only when the service imported it)."""
    out: dict[str, int] = {"process_threads": len(os.listdir("/proc/self/task"))}
    if "torch" in sys.modules:
        out["torch_threads"] = sys.modules["torch"].get_num_threads()
    return out


def worker(service: str, n_images: int) -> dict[str, Any]:
    """Measured in this process: see the module docstring."""
    started = time.perf_counter()
    extract, info = build_extractor(service)
    load_s = time.perf_counter() - started
    rss_loaded = rss_mb()
    files = [p.read_bytes() for p in picture_files(n_images + 1)]
    extract(files[0])
    rss_first = rss_mb()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for data in files[1:]:
        extract(data)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    n = max(len(files) - 1, 1)
    pss = pss_mb()
    return {
        "service": service,
        **info,
        **threads_in_use(),
        "images": n,
        "wall_ms": 1000 * wall / n,
        "cpu_ms": 1000 * cpu / n,
        "load_s": load_s,
        "rss_loaded_mb": rss_loaded,
        "rss_first_mb": rss_first,
        "rss_end_mb": rss_mb(),
        "rss_peak_mb": peak_rss_mb(),
        "pss_end_mb": pss[0],
        "anon_end_mb": pss[1],
        "modules": sorted(
            m for m in ("torch", "numba", "cv2", "onnxruntime", "open_clip") if m in sys.modules
        ),
    }


@dataclass
class CostRow:
    service: str
    result: dict[str, Any]
    error: str = ""


def measure(
    services: list[str], n_images: int, small: bool, extra_env: dict[str, str] | None = None
) -> list[CostRow]:
    """Each service in a fresh process, one after the other (none competes with another)."""
    import tempfile

    from ambience_support.tiny_tokenizer import write_tokenizer

    # SigLIP 2 needs its tokenizer files at start-up; indexing never tokenizes: a tiny local one.
    tokenizer = write_tokenizer(Path(tempfile.mkdtemp(prefix="ambience-cost-tok-")))
    rows = []
    for service in services:
        env = {
            "AMBIENCE_IMAGE_TEXT_TOKENIZER": str(tokenizer),
            **os.environ,
            "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
            "AMBIENCE_DOWNLOAD_MODELS": "0",
            **STACK.get(service, {}),
            **(SMALL_ENV.get(service, {}) if small else {}),
            **(extra_env or {}),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "bench.service_costs", service, str(n_images)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if proc.returncode != 0:
            rows.append(
                CostRow(service, {}, proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
            )
            continue
        rows.append(CostRow(service, json.loads(proc.stdout.strip().splitlines()[-1])))
        print(f"[service_costs] {service}: {rows[-1].result}", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[CostRow], label: str = "") -> str:
    out = [
        f"| service{label} | model (runtime) | threads | wall ms/image | CPU ms/image | RSS loaded MB "
        "| RSS after 1 MB | RSS after all MB | peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row.result
        if row.error:
            out.append(f"| {row.service} | failed: {row.error[:120]} |||||||")
            continue
        model = r.get("model", "") + (f" ({r['runtime']})" if r.get("runtime") else "")
        out.append(
            f"| {row.service} | {model or '-'} | {r.get('torch_threads', '-')} / {r['process_threads']} "
            f"| {r['wall_ms']:.0f} | {r['cpu_ms']:.0f} | {r['rss_loaded_mb']:.0f} | {r['rss_first_mb']:.0f} "
            f"| {r['rss_end_mb']:.0f} | {r['rss_peak_mb']:.0f} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1], int(sys.argv[2]))))

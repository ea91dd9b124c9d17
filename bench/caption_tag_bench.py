"""Seconds per caption and per tag set, and peak memory, of the captioner and tagger services.

Each service runs as its own process (``python -m services.<name>``) with the real default
architecture (coca_ViT-L-14, ResNet50/Places365) and RANDOM weights (this machine cannot download the
published ones; the compute is the same, except that a random captioner never ends a caption early,
so every caption here runs to ``max_length`` tokens - the worst case). Photos are posted one at a
time over HTTP; the reference measured in the same run is the model alone in this process (the
image forward pass for the tagger, beam search on a preprocessed tensor for the captioner), so the
ratio shows what HTTP, decoding and batching add. Peak memory is the service's VmHWM.

    python bench/caption_tag_bench.py [--images 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.models import ResolvedWeights
from tests.helpers import PHOTOS, ServiceProcess, load_rgb, photo_paths

RANDOM = ResolvedWeights("random", None, "random-seed0", "random")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_labels(folder: Path) -> None:
    """Category and IO files in CSAIL's format (names are placeholders; timing does not care)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"/s/scene_{i:03d}" for i in range(365)]
    (folder / "categories_places365.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    (folder / "IO_places365.txt").write_text("".join(f"{n} {1 + i % 2}\n" for i, n in enumerate(names)))


def time_service(module: str, prefix: str, route: str, env: dict[str, str], photos: list[Path], tmp: Path):  # type: ignore[no-untyped-def]
    svc = ServiceProcess(module, prefix, tmp / f"data-{module}", env)
    started = time.perf_counter()
    svc.start(timeout=600)
    startup = time.perf_counter() - started
    try:
        seconds, answers = [], []
        for i, path in enumerate(photos):
            data = path.read_bytes()
            t = time.perf_counter()
            r = httpx.post(svc.url + route, files={"image": (path.name, data)}, timeout=600)
            r.raise_for_status()
            if i:  # the first request warms up allocators and kernels
                seconds.append(time.perf_counter() - t)
            answers.append(r.json())
        assert svc.proc is not None
        rss = peak_rss_mb(svc.proc.pid)
    finally:
        svc.stop()
    return {
        "startup_s": round(startup, 1),
        "per_image_s": seconds,
        "peak_rss_mb": round(rss),
        "answers": answers,
    }


def reference_caption_s(photos: list[Path], device: torch.device, max_length: int) -> list[float]:
    from services.captioner.coca import CocaCaptioner
    from services.captioner.service import CaptionerSettings

    captioner = CocaCaptioner(CaptionerSettings().model, RANDOM, device, max_length=max_length)
    out = []
    for i, path in enumerate(photos):
        pixels = captioner.preprocess(load_rgb(path))[None]
        t = time.perf_counter()
        captioner.generate(pixels)
        if i:
            out.append(time.perf_counter() - t)
    return out


def reference_tag_s(photos: list[Path], device: torch.device) -> list[float]:
    from services.tagger.places import INPUT_SIZE, build_resnet50

    net = build_resnet50().eval().to(device)
    out = []
    for i, _ in enumerate(photos):
        x = torch.randn(1, 3, INPUT_SIZE, INPUT_SIZE, device=device)
        t = time.perf_counter()
        with torch.inference_mode():
            net(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            out.append(time.perf_counter() - t)
    return out


def summary(values: list[float]) -> str:
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"median {med:.3f} s (min {lo:.3f}, max {hi:.3f}, n={len(values)})"


def report(name: str, res: dict) -> None:
    http, ref = statistics.median(res["per_image_s"]), statistics.median(res["reference_s"])
    print(f"\n{name}: start-up {res['startup_s']} s, peak RSS {res['peak_rss_mb']} MB")
    print(f"  over HTTP        : {summary(res['per_image_s'])}")
    print(f"  model only (ref) : {summary(res['reference_s'])}")
    print(f"  ratio HTTP / model only: {http / ref:.2f}")
    print(f"  sample answer    : {json.dumps(res['answers'][-1])[:160]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5, help="photos per service (the first is warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-length", type=int, default=30, help="caption tokens (the service default)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads in services and reference (0 = torch default)"
    )
    parser.add_argument("--skip-captioner", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    photos = photo_paths(PHOTOS, args.images)
    if len(photos) < 2:
        sys.exit(f"need at least 2 photos in {PHOTOS}")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"{len(photos)} photos from {PHOTOS}; device {device}; torch threads {torch.get_num_threads()}; "
        f"cpus {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}"
    )
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_labels(tmp / "models" / "tagger")
        common = {
            "AMBIENCE_MODELS_DIR": str(tmp / "models"),
            "AMBIENCE_DOWNLOAD_MODELS": "0",
            "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
        }
        threads = str(args.threads)
        tagger_env = {
            **common,
            "AMBIENCE_TAGGER_WEIGHTS": "random",
            "AMBIENCE_TAGGER_DEVICE": args.device,
            "AMBIENCE_TAGGER_TORCH_THREADS": threads,
        }
        results["tagger"] = time_service(
            "services.tagger", "AMBIENCE_TAGGER_", "/get_image_tags", tagger_env, photos, tmp
        )
        results["tagger"]["reference_s"] = reference_tag_s(photos, device)
        report("tagger", results["tagger"])
        if not args.skip_captioner:
            caption_env = {
                **common,
                "AMBIENCE_CAPTIONER_WEIGHTS": "random",
                "AMBIENCE_CAPTIONER_DEVICE": args.device,
                "AMBIENCE_CAPTIONER_MAX_LENGTH": str(args.max_length),
                "AMBIENCE_CAPTIONER_TORCH_THREADS": threads,
            }
            results["captioner"] = time_service(
                "services.captioner", "AMBIENCE_CAPTIONER_", "/get_image_caption", caption_env, photos, tmp
            )
            # The model-only reference costs as much as the service: two photos are enough.
            results["captioner"]["reference_s"] = reference_caption_s(photos[:2], device, args.max_length)
            report("captioner", results["captioner"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

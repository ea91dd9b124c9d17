"""captioner and tagger: seconds per caption and per tag set over HTTP vs the model alone, start-up
and peak memory of each service.

Each service runs as its own process (``python -m services.<name>``) with the real default
architecture (coca_ViT-L-14, ResNet50/Places365) and RANDOM weights (this machine cannot download the
published ones; the compute is the same, except that a random captioner never ends a caption early,
so every caption here runs to ``max_length`` tokens - the worst case). Photos are posted one at a
time over HTTP (the first is warm-up); the reference measured in the same run is the model alone in
this process (the image forward pass for the tagger, beam search on a preprocessed tensor for the
captioner), so the ratio shows what HTTP, decoding and batching add. Peak memory is the service's
VmHWM.

``--small``: the tiny CoCa config the tests use, 2 photos, 10 tokens, both services starting while
the references run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ambience_support.memory import peak_rss_mb
from ambience_support.offline import write_places_labels
from ambience_support.photos import PHOTOS, load_rgb, photo_paths
from ambience_support.processes import ServiceProcess
from bench.harness import load_average, progress, small_note
from bench.model_speed.common import RANDOM, TINY_COCA, set_threads

log = progress("model_speed over_http")


@dataclass
class Measured:
    label: str
    startup_s: float = 0.0
    per_image_s: list[float] = field(default_factory=list)  # over HTTP, warm-up excluded
    peak_rss_mb: float = 0.0
    reference_s: list[float] = field(default_factory=list)  # the model alone, in this process


def start(svc: ServiceProcess) -> float:
    """Start a service and return its start-up time (process start to a healthy /health)."""
    started = time.perf_counter()
    svc.start(timeout=600)
    return time.perf_counter() - started


def post_photos(svc: ServiceProcess, route: str, photos: list[Path], into: Measured) -> None:
    """One upload at a time over one kept-alive connection, as a client would send them."""
    with httpx.Client(base_url=svc.url, timeout=600) as client:
        for i, path in enumerate(photos):
            data = path.read_bytes()
            started = time.perf_counter()
            r = client.post(route, files={"image": (path.name, data)})
            r.raise_for_status()
            if i:  # the first request warms up allocators and kernels
                into.per_image_s.append(time.perf_counter() - started)
            log(f"{into.label} {path.name}: {time.perf_counter() - started:.2f} s, {str(r.json())[:80]}")
    assert svc.proc is not None
    into.peak_rss_mb = peak_rss_mb(svc.proc.pid)


def reference_caption_s(
    photos: list[Path], device: str, model: str, config: str, beam_width: int, max_length: int
) -> tuple[list[float], list[int]]:
    """Seconds per caption of the model alone and the caption lengths in tokens."""
    import torch

    from services.captioner.coca import CocaCaptioner
    from services.common.models.open_clip_loader import register_model_configs

    register_model_configs("captioner", config)
    captioner = CocaCaptioner(
        model, RANDOM, torch.device(device), beam_width=beam_width, max_length=max_length
    )
    warm = captioner.preprocess(load_rgb(photos[0]))[None]
    captioner.max_length = captioner.min_length + 1  # a short warm-up caption: same kernels, less time
    captioner.generate(warm)
    captioner.max_length = max_length
    seconds, lengths = [], []
    for path in photos:
        pixels = captioner.preprocess(load_rgb(path))[None]
        started = time.perf_counter()
        tokens = captioner.generate(pixels)
        seconds.append(time.perf_counter() - started)
        lengths.append(len(tokens[0]))
        log(f"captioner model only {path.name}: {seconds[-1]:.2f} s, {lengths[-1]} tokens")
    return seconds, lengths


def reference_tag_s(n: int, device: str) -> list[float]:
    import torch

    from services.tagger.places import INPUT_SIZE, build_resnet50

    dev = torch.device(device)
    net = build_resnet50().eval().to(dev)
    out = []
    for i in range(n + 1):
        x = torch.randn(1, 3, INPUT_SIZE, INPUT_SIZE, device=dev)
        started = time.perf_counter()
        with torch.inference_mode():
            net(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first is warm-up
            out.append(time.perf_counter() - started)
    return out


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.3f} s (n=1)"
    return f"{med:.3f} s (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"


def markdown(
    args: argparse.Namespace,
    device: str,
    caption_model: str,
    photos: list[Path],
    rows: list[Measured],
    caption_lengths: list[int],
    caption_s: list[float],
    threads: int,
    load: float,
) -> str:
    out: list[str] = []
    if args.small:
        out.append(
            small_note(
                f"the tiny CoCa config the tests use ({TINY_COCA.name}) instead of coca_ViT-L-14; both "
                "services start at the same time while the model-only references run (start-ups and "
                "references overlap)"
            )
        )
    out += [
        f"Each service runs as its own process with random weights: tagger ResNet50/Places365, captioner "
        f"{caption_model} (beam width {args.beam_width}, max_length {args.max_length} tokens). "
        f"{len(photos)} photos from `{PHOTOS.name}` are posted one at a time over HTTP, the first as "
        "warm-up. The reference, "
        "measured in the same run, is the model alone in the bench process: the image forward pass for "
        "the tagger, beam search on a preprocessed tensor for the captioner. Device "
        f"{device}, {threads} torch thread{'s' if threads != 1 else ''} in the services and the "
        f"reference, {os.cpu_count()} CPUs (load average {load:.1f} at the start). Start-up is process "
        "start to a healthy /health; peak RSS is the service's VmHWM.",
        "",
        "| service | per image over HTTP (median) | model only, same run (median) | ratio HTTP / model only "
        "| start-up | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = (
            f"{statistics.median(r.per_image_s) / statistics.median(r.reference_s):.2f}"
            if r.per_image_s and r.reference_s
            else "-"
        )
        out.append(
            f"| {r.label} | {cell(r.per_image_s)} | {cell(r.reference_s)} | {ratio} "
            f"| {r.startup_s:.1f} s | {r.peak_rss_mb:.0f} MB |"
        )
    overheads = []
    for r, unit in zip(rows, ("per tag set", "per caption"), strict=False):
        if r.per_image_s and r.reference_s:
            delta = statistics.median(r.per_image_s) - statistics.median(r.reference_s)
            amount = f"{round(1000 * delta):+d} ms" if abs(delta) < 1 else f"{delta:+.1f} s"
            overheads.append((r.label.split(" ")[0], amount, unit, delta))
    if overheads:
        said = "; ".join(f"{name} {amount} {unit}" for name, amount, unit, _ in overheads)
        noise = (
            " (a negative difference means the service was faster than the reference: run-to-run noise "
            "of the same computation)"
            if any(delta < 0 for *_, delta in overheads)
            else ""
        )
        out += [
            "",
            f"What HTTP, decoding and the micro-batcher add to the model alone in this run: {said}{noise}.",
        ]
    if caption_lengths:
        at_limit = sum(n >= args.max_length for n in caption_lengths)
        if at_limit == len(caption_lengths):
            lengths = (
                f"every caption timed for the reference ran to the max_length of {args.max_length} tokens"
            )
        else:
            lengths = (
                f"the captions timed for the reference ran to {min(caption_lengths)}-{max(caption_lengths)} "
                f"tokens ({at_limit} of {len(caption_lengths)} at the max_length of {args.max_length})"
            )
        out += [
            "",
            f"A captioner with random weights does not end its captions early: {lengths}, the worst case. "
            "A real caption ends at its end token and costs less. A caption is the image encoder once "
            "plus one decoding step per token (every beam, the newest token against the key/value "
            "cache); the CPU inference block (`--parts runtimes`) times the encoder and the steps apart.",
        ]
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> str:
    from services.captioner.service import CaptionerSettings

    args = argparse.Namespace(**vars(args))  # this part's defaults filled in, the caller's args kept
    args.beam_width = args.beam_width or CaptionerSettings.model_fields["beam_width"].default
    args.max_length = args.max_length or (10 if args.small else 30)
    args.caption_references = args.caption_references or (1 if args.small else 2)
    photos = photo_paths(PHOTOS, args.images or (2 if args.small else 3))
    if len(photos) < 2:
        raise SystemExit(f"need at least 2 photos in {PHOTOS} (set AMBIENCE_TEST_PHOTOS)")
    load = load_average()
    threads = set_threads(args, 1)
    torch_threads = 1 if args.threads is None else args.threads
    device = args.device or "cpu"
    rows: list[Measured] = []
    caption_lengths: list[int] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_places_labels(tmp / "models" / "tagger")
        common = {
            "AMBIENCE_MODELS_DIR": str(tmp / "models"),
            "AMBIENCE_DOWNLOAD_MODELS": "0",
            "AMBIENCE_ALLOW_RANDOM_WEIGHTS": "1",
        }
        tagger = ServiceProcess(
            "services.tagger",
            "AMBIENCE_TAGGER_",
            tmp / "data-tagger",
            {
                **common,
                "AMBIENCE_TAGGER_WEIGHTS": "random",
                "AMBIENCE_TAGGER_DEVICE": device,
                "AMBIENCE_TAGGER_TORCH_THREADS": str(torch_threads),
            },
        )
        caption_model = "tiny-coca" if args.small else "coca_ViT-L-14"
        caption_config = str(TINY_COCA) if args.small else ""
        captioner = ServiceProcess(
            "services.captioner",
            "AMBIENCE_CAPTIONER_",
            tmp / "data-captioner",
            {
                **common,
                "AMBIENCE_CAPTIONER_MODEL": caption_model,
                "AMBIENCE_CAPTIONER_MODEL_CONFIG_PATH": caption_config,
                "AMBIENCE_CAPTIONER_WEIGHTS": "random",
                "AMBIENCE_CAPTIONER_DEVICE": device,
                "AMBIENCE_CAPTIONER_MAX_LENGTH": str(args.max_length),
                "AMBIENCE_CAPTIONER_BEAM_WIDTH": str(args.beam_width),
                "AMBIENCE_CAPTIONER_TORCH_THREADS": str(torch_threads),
            },
        )
        services = [("tagger", tagger, "/get_image_tags")]
        if not args.skip_captioner:
            services.append(("captioner", captioner, "/get_image_caption"))
        labels = {
            "tagger": f"tagger (ResNet50, per tag set, {threads} thread{'s' if threads != 1 else ''})",
            "captioner": (
                f"captioner ({caption_model}, per caption, beam width {args.beam_width}, "
                f"{args.max_length} tokens)"
            ),
        }

        def references() -> tuple[list[float], list[float], list[int]]:
            log("model-only references")
            tag_s = reference_tag_s(len(photos) - 1, device)
            if args.skip_captioner:
                return tag_s, [], []
            caption_s, lengths = reference_caption_s(
                photos[1 : 1 + args.caption_references],
                device,
                caption_model,
                caption_config,
                args.beam_width,
                args.max_length,
            )
            return tag_s, caption_s, lengths

        try:
            if args.small:
                # Everything overlaps (both start-ups and the references): a smoke test of the script,
                # not a measurement.
                log("starting both services")
                with ThreadPoolExecutor(len(services)) as pool:
                    starting = [pool.submit(start, svc) for _, svc, _ in services]
                    tag_s, caption_s, caption_lengths = references()
                    startups = [f.result() for f in starting]
            for i, (name, svc, route) in enumerate(services):
                measured = Measured(labels[name])
                if args.small:
                    measured.startup_s = startups[i]
                else:
                    log(f"starting {name}")
                    measured.startup_s = start(svc)
                post_photos(svc, route, photos, measured)
                svc.stop()
                rows.append(measured)
        finally:
            tagger.stop()
            captioner.stop()
        if not args.small:  # alone on the machine, the services stopped
            tag_s, caption_s, caption_lengths = references()
        rows[0].reference_s = tag_s
        if len(rows) > 1:
            rows[1].reference_s = caption_s
    return markdown(args, device, caption_model, photos, rows, caption_lengths, caption_s, threads, load)

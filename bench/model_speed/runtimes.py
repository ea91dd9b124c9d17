"""CPU inference: captions with and without the key/value cache, and images/s per model service for
eager fp32 vs the other image-tower runtimes.

The captioner: the real ``coca_ViT-L-14`` architecture with random weights (a random captioner never
ends early, so every caption runs to its length limit), beam width 2, one image; seconds per caption
at 10, 20 and 30 tokens with the cache (``AMBIENCE_CAPTIONER_KV_CACHE=1``, the default) and without
it (the towers re-run on the whole prefix, as open_clip does), measured in the same run,
alternately, for a few rounds (medians count). The image encoder and the search are timed apart: a
caption is both, the mean decoding step is the search's time over its ``tokens - 1`` steps. Beside
those, the cost of one step, the one that produces token N (prefix length N - 1): through the
captioner's own step functions (``CocaCaptioner.decoding_step``), with a cache already holding the
prefix but its last position (filled outside the timed region, rewound before each repeat) against
the towers over the whole prefix, alternating, their logits compared.

The image towers of global_features (BEiT-base), image_text (ViT-B-16), tagger (ResNet50/Places365)
and the captioner's encoder (CoCa ViT-L-14) under each runtime of
``services/common/models/inference.py``, through the same ``build_image_tower`` the services use:
images/s on a batch of 4 (random pixels; speed does not depend on them), the runtimes alternating
for a few rounds and the best round of each counting (:func:`best_seconds`), eager fp32 being the
reference. Each runtime's largest difference from eager is reported too.

``--captions-only``: the captioner alone; ``--skip-captioner``: the image towers of the others only;
``--small``: the tiny test models, short captions.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.harness import load_average, progress, small_note
from bench.model_speed.common import RANDOM, TINY_CLIP, TINY_COCA, best_seconds, set_threads
from services.common.models.inference import build_image_tower

log = progress("model_speed runtimes")


# -- part 1: the captioner's key/value cache ------------------------------------------------------------


@dataclass
class CaptionRow:
    tokens: int
    cached_encode_s: list[float] = field(default_factory=list)
    cached_search_s: list[float] = field(default_factory=list)
    uncached_encode_s: list[float] = field(default_factory=list)
    uncached_search_s: list[float] = field(default_factory=list)
    cached_search_cpu_s: list[float] = field(default_factory=list)
    uncached_search_cpu_s: list[float] = field(default_factory=list)
    same_tokens: bool = True
    to_the_limit: bool = True
    # One decoding step, the one that produces token ``tokens`` (wall clock, CPU), every repeat.
    cached_one_step_s: list[float] = field(default_factory=list)
    uncached_one_step_s: list[float] = field(default_factory=list)
    cached_one_step_cpu_s: list[float] = field(default_factory=list)
    uncached_one_step_cpu_s: list[float] = field(default_factory=list)
    same_step: bool = True  # logits allclose and the same best next tokens, cache on and off
    step_difference: float = 0.0  # the largest logit difference relative to the largest logit

    def caption_s(self, cached: bool) -> float:
        """Median seconds per caption (image encoder + search)."""
        if cached:
            return statistics.median(map(sum, zip(self.cached_encode_s, self.cached_search_s, strict=True)))
        return statistics.median(map(sum, zip(self.uncached_encode_s, self.uncached_search_s, strict=True)))

    def step_s(self, cached: bool, cpu: bool = False) -> float:
        """Median seconds per decoding step: the search's time over its ``tokens - 1`` steps (``cpu``:
        the process's CPU time rather than the wall clock's)."""
        if cpu:
            times = self.cached_search_cpu_s if cached else self.uncached_search_cpu_s
        else:
            times = self.cached_search_s if cached else self.uncached_search_s
        return statistics.median(times) / (self.tokens - 1)

    def one_step_s(self, cached: bool, cpu: bool = False) -> float:
        """Median seconds of the step that produces token ``tokens`` (over rounds and repeats)."""
        if cpu:
            return statistics.median(self.cached_one_step_cpu_s if cached else self.uncached_one_step_cpu_s)
        return statistics.median(self.cached_one_step_s if cached else self.uncached_one_step_s)


def _timed(step: Any, rows: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """``step(rows, tokens)`` -> its logits, wall-clock and CPU seconds."""
    started, started_cpu = time.perf_counter(), time.process_time()
    logits = step(rows, tokens)
    return logits, time.perf_counter() - started, time.process_time() - started_cpu


@torch.inference_mode()
def one_step(
    captioner: Any, image_embs: torch.Tensor, caption: list[int], row: CaptionRow, repeats: int
) -> None:
    """Times the step that produces token ``row.tokens`` of ``caption`` (prefix length ``tokens - 1``,
    every beam on that prefix), ``repeats`` times, cache on and off alternating: with the cache, the
    captioner's decoder filled with the prefix but its last position outside the timed region (and
    rewound to it before each repeat), so the step runs the last prefix token; without, the towers
    over the whole prefix. Both are the step functions beam search calls."""
    from services.captioner.incremental import CachedCocaDecoder

    prefix = torch.tensor([caption[: row.tokens - 1]] * captioner.beam_width)
    rows = torch.zeros(captioner.beam_width, dtype=torch.long)
    kv_cache = captioner.kv_cache
    captioner.kv_cache = True
    cached, _ = captioner.decoding_step(image_embs)
    captioner.kv_cache = False
    uncached, _ = captioner.decoding_step(image_embs)
    captioner.kv_cache = kv_cache
    assert isinstance(cached, CachedCocaDecoder)
    cached(rows, prefix[:, :-1])  # the cache holds the first tokens - 2 positions
    for _ in range(repeats):
        cached.rewind(row.tokens - 2)
        with_cache, wall, cpu = _timed(cached, rows, prefix)
        row.cached_one_step_s.append(wall)
        row.cached_one_step_cpu_s.append(cpu)
        without, wall, cpu = _timed(uncached, rows, prefix)
        row.uncached_one_step_s.append(wall)
        row.uncached_one_step_cpu_s.append(cpu)
        scale = float(without.abs().max())
        row.step_difference = max(row.step_difference, float((with_cache - without).abs().max()) / scale)
        best = 2 * captioner.beam_width  # the candidates beam search ranks per beam
        row.same_step &= torch.allclose(with_cache, without, rtol=1e-4, atol=1e-5 * scale) and torch.equal(
            with_cache.topk(best).indices, without.topk(best).indices
        )


def caption_rows(
    model: str, lengths: list[int], rounds: int, beam_width: int, step_repeats: int
) -> list[CaptionRow]:
    """Seconds to encode the image and to search its caption, with and without the cache, each
    length measured ``rounds`` times, cache on and off alternating (both see the same load); then,
    in the same round, the step that produces the caption's last token (:func:`one_step`)."""
    from ambience_support.images import synthetic_image
    from services.captioner.coca import CocaCaptioner

    captioner = CocaCaptioner(model, RANDOM, torch.device("cpu"), beam_width=beam_width, min_length=2)
    pixels = captioner.preprocess(synthetic_image(3, (640, 480)))[None]
    captioner.max_length = 3
    captioner.generate(pixels)  # warm-up
    rows = [CaptionRow(length) for length in lengths]
    for round_ in range(rounds):
        for row in rows:
            captioner.max_length = row.tokens
            outputs = []
            for cached in (True, False):
                captioner.kv_cache = cached
                started = time.perf_counter()
                image_embs = captioner.encode(pixels)
                encoded, encoded_cpu = time.perf_counter(), time.process_time()
                outputs.append(captioner.search(image_embs))
                searched, searched_cpu = time.perf_counter(), time.process_time()
                (row.cached_encode_s if cached else row.uncached_encode_s).append(encoded - started)
                (row.cached_search_s if cached else row.uncached_search_s).append(searched - encoded)
                cpu = row.cached_search_cpu_s if cached else row.uncached_search_cpu_s
                cpu.append(searched_cpu - encoded_cpu)
            row.same_tokens &= outputs[0] == outputs[1]
            # A caption as long as the limit means the search ran all ``tokens - 1`` steps.
            row.to_the_limit &= all(len(ids) == row.tokens for ids in outputs[0])
            log(
                f"round {round_ + 1}, {row.tokens} tokens: search cached {row.cached_search_s[-1]:.2f} s, "
                f"uncached {row.uncached_search_s[-1]:.2f} s; encoder {row.cached_encode_s[-1]:.2f} s, "
                f"{row.uncached_encode_s[-1]:.2f} s; load {os.getloadavg()[0]:.1f}"
            )
            if len(outputs[0][0]) >= row.tokens - 1:  # a caption that ended early has no such prefix
                one_step(captioner, image_embs, outputs[0][0], row, step_repeats)
                log(
                    f"round {round_ + 1}, the step producing token {row.tokens}: CPU cached "
                    f"{1000 * row.cached_one_step_cpu_s[-1]:.0f} ms, uncached "
                    f"{1000 * row.uncached_one_step_cpu_s[-1]:.0f} ms (last repeat)"
                )
    return rows


# -- part 2: image towers per runtime ---------------------------------------------------------------------


@dataclass
class TowerRow:
    service: str
    model: str
    default: str
    batch: int
    images_per_s: dict[str, float] = field(default_factory=dict)
    max_difference: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _first(out: Any) -> torch.Tensor:
    return out[-1] if isinstance(out, tuple) else out


def tower_row(
    service: str,
    model: str,
    default: str,
    net: torch.nn.Module,
    size: int,
    runtimes: list[str],
    rounds: int,
    batch: int = 4,
) -> TowerRow:
    row = TowerRow(service, model, default, batch)
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    net.eval()
    towers = {}
    for runtime in runtimes:
        try:
            started = time.perf_counter()
            module = net if runtime == "eager" else copy.deepcopy(net)
            towers[runtime] = build_image_tower(module, runtime, pixels[:1])
            log(f"{service}: {runtime} built in {time.perf_counter() - started:.1f} s")
        except Exception as exc:  # a runtime that cannot run this model is reported, not fatal
            row.failed[runtime] = str(exc).splitlines()[0][:120]
            log(f"{service}: {runtime} failed: {row.failed[runtime]}")
    best = best_seconds(
        {runtime: lambda tower=tower: tower(pixels) for runtime, tower in towers.items()}, rounds
    )
    reference = _first(towers["eager"](pixels))
    for runtime, tower in towers.items():
        row.images_per_s[runtime] = len(pixels) / best[runtime]
        difference = (_first(tower(pixels)) - reference).abs().max() / reference.abs().max()
        row.max_difference[runtime] = float(difference)
    log(f"{service}: " + ", ".join(f"{k} {v:.2f}/s" for k, v in row.images_per_s.items()))
    return row


def tower_rows(small: bool, runtimes: list[str], rounds: int, skip_captioner: bool) -> list[TowerRow]:
    import open_clip
    import timm
    import torchvision

    from services.captioner.service import CaptionerSettings
    from services.global_features.settings import DEFAULT_MODEL, GlobalFeaturesSettings
    from services.image_text.settings import ImageTextSettings
    from services.tagger.service import TaggerSettings

    torch.manual_seed(0)
    rows = []
    if small:
        open_clip.add_model_config(TINY_CLIP)
        open_clip.add_model_config(TINY_COCA)
        specs: list[tuple[str, str, str, Any, int]] = [
            (
                "global_features",
                "resnet18",
                GlobalFeaturesSettings.cpu_runtime,
                lambda: torchvision.models.resnet18(),
                64,
            ),
            (
                "image_text",
                "tiny-clip",
                ImageTextSettings.cpu_runtime,
                lambda: open_clip.create_model("tiny-clip").visual,
                64,
            ),
            ("tagger", "resnet18", TaggerSettings.cpu_runtime, lambda: torchvision.models.resnet18(), 64),
            (
                "captioner",
                "tiny-coca",
                CaptionerSettings.cpu_runtime,
                lambda: open_clip.create_model("tiny-coca").visual,
                64,
            ),
        ]
    else:
        specs = [
            (
                "global_features",
                DEFAULT_MODEL.split(".")[0],
                GlobalFeaturesSettings.cpu_runtime,
                lambda: timm.create_model(DEFAULT_MODEL.split(".")[0], num_classes=0),
                224,
            ),
            (
                "image_text",
                "ViT-B-16",
                ImageTextSettings.cpu_runtime,
                lambda: open_clip.create_model("ViT-B-16").visual,
                224,
            ),
            (
                "tagger",
                "ResNet50/Places365",
                TaggerSettings.cpu_runtime,
                lambda: torchvision.models.resnet50(num_classes=365),
                224,
            ),
            (
                "captioner",
                "coca_ViT-L-14 encoder",
                CaptionerSettings.cpu_runtime,
                lambda: open_clip.create_model("coca_ViT-L-14").visual,
                224,
            ),
        ]
    for service, model, default, build, size in specs:
        if skip_captioner and service == "captioner":
            continue
        wanted = ["eager", *[r for r in runtimes if r != "eager"]]
        if default not in wanted:
            wanted.append(default)
        batch = 4
        if service == "captioner" and not small:
            # The ViT-L encoder (seconds per image here; exporting it to ONNX takes minutes): its
            # default alone, one image per call. Part 1 times it per caption too.
            wanted, batch = ["eager", default] if default != "eager" else ["eager"], 1
        rows.append(tower_row(service, model, default, build(), size, wanted, rounds, batch))
    return rows


# -- report ------------------------------------------------------------------------------------------------


def markdown(
    args: argparse.Namespace, captions: list[CaptionRow], towers: list[TowerRow], load_at_start: float
) -> str:
    threads = torch.get_num_threads()
    load = os.getloadavg()[0]
    out: list[str] = []
    if args.small:
        out.append(small_note("tiny test models"))
    model = "tiny-coca" if args.small else "coca_ViT-L-14"
    out += [
        f"CPU, {threads} torch thread{'s' if threads != 1 else ''}, {os.cpu_count()} CPUs (load average "
        f"{load_at_start:.1f} at the start, {load:.1f} at the end: a shared machine, so only ratios "
        "measured in this run mean much).",
    ]
    if captions:
        encoder = statistics.median(t for r in captions for t in r.cached_encode_s + r.uncached_encode_s)
        out += [
            "",
            f"**Captioner, key/value cache** ({model}, random weights, beam width {args.beam_width}, one "
            f"image; medians of {args.rounds} round{'s' if args.rounds != 1 else ''}, each alternating "
            "cache on and off). A caption is the image encoder (the same in both, median "
            f"{encoder:.2f} s) plus the search; the mean decoding step is the search's time over its "
            "`tokens - 1` steps (steps at every prefix length from 1 to `tokens - 1`), timed apart "
            "from the encoder; CPU: the process's CPU time (what the step costs, whatever share of the "
            "cores the shared machine gave it):",
            "",
            "| tokens | per caption, cache | per caption, no cache | speed-up | mean step, cache "
            "| mean step, no cache | speed-up | CPU per mean step, cache | CPU per mean step, no cache "
            "| speed-up | same tokens |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in captions:
            cached, uncached = r.caption_s(True), r.caption_s(False)
            step_cached, step_uncached = r.step_s(True), r.step_s(False)
            cpu_cached, cpu_uncached = r.step_s(True, cpu=True), r.step_s(False, cpu=True)
            same = ("yes" if r.same_tokens else "NO") + ("" if r.to_the_limit else " (ended early)")
            out.append(
                f"| {r.tokens} | {cached:.2f} s | {uncached:.2f} s | {uncached / cached:.1f}x "
                f"| {1000 * step_cached:.0f} ms | {1000 * step_uncached:.0f} ms "
                f"| {step_uncached / step_cached:.1f}x | {1000 * cpu_cached:.0f} ms "
                f"| {1000 * cpu_uncached:.0f} ms | {cpu_uncached / cpu_cached:.1f}x | {same} |"
            )
        stepped = [r for r in captions if r.cached_one_step_s]
        if stepped:
            samples = len(stepped[0].cached_one_step_s)
            out += [
                "",
                f"**Cost of the step that produces token N** (one decoding step at prefix length N - 1, "
                f"all {args.beam_width} beams on the first N - 1 tokens of that round's caption; the "
                "step functions beam search calls, in the same rounds as above; medians of "
                f"{samples} ({args.rounds} round{'s' if args.rounds != 1 else ''} x {args.step_repeats} "
                f"repeat{'s' if args.step_repeats != 1 else ''}), each repeat cache on "
                "then off). Cache: the decoder already holds the prefix's first N - 2 positions "
                "(filled outside the timed region, rewound before each repeat), the step runs the "
                "prefix's last token against them; no cache: the text tower and decoder over the whole "
                "N - 1 prefix. Same logits: allclose (relative 1e-4) and the same best "
                f"{2 * args.beam_width} next tokens per beam, with the largest difference relative to the "
                "largest logit:",
                "",
                "| token N | step, cache | step, no cache | speed-up | CPU, cache | CPU, no cache | speed-up "
                "| same logits |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for r in stepped:
                wall_cached, wall_uncached = r.one_step_s(True), r.one_step_s(False)
                cpu_cached, cpu_uncached = r.one_step_s(True, cpu=True), r.one_step_s(False, cpu=True)
                out.append(
                    f"| {r.tokens} | {1000 * wall_cached:.0f} ms | {1000 * wall_uncached:.0f} ms "
                    f"| {wall_uncached / wall_cached:.1f}x | {1000 * cpu_cached:.0f} ms "
                    f"| {1000 * cpu_uncached:.0f} ms | {cpu_uncached / cpu_cached:.1f}x "
                    f"| {'yes' if r.same_step else 'NO'} ({r.step_difference:.0e}) |"
                )
    if towers:
        runtimes = sorted(
            {k for t in towers for k in t.images_per_s} | {k for t in towers for k in t.failed},
            key=lambda r: ("eager", "channels_last", "compile", "onnx", "bf16", "int8").index(r),
        )
        out += [
            "",
            f"**Image towers, images/s** (batches of 4, the captioner's encoder 1; random weights, best "
            f"of {args.tower_rounds} alternating rounds; "
            "in brackets the ratio to eager fp32 and the largest difference from eager's output relative to "
            "its largest value; **bold**: the service's default on CPU, `auto`):",
            "",
            "| service (model) | " + " | ".join(runtimes) + " |",
            "|---|" + "---|" * len(runtimes),
        ]
        for t in towers:
            cells = []
            eager = t.images_per_s.get("eager", float("nan"))
            for runtime in runtimes:
                if runtime in t.failed:
                    cells.append("fails")
                elif runtime not in t.images_per_s:
                    cells.append("-")
                else:
                    rate = t.images_per_s[runtime]
                    text = f"{rate:.2f} ({rate / eager:.2f}x, {t.max_difference[runtime]:.0e})"
                    cells.append(f"**{text}**" if runtime == t.default else text)
            out.append(f"| {t.service} ({t.model}) | " + " | ".join(cells) + " |")
        failures = [f"{t.service} {r}: {m}" for t in towers for r, m in t.failed.items()]
        if failures:
            out += ["", "Failed to build: " + "; ".join(failures) + "."]
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> str:
    from services.captioner.service import CaptionerSettings

    args = argparse.Namespace(**vars(args))  # this part's defaults filled in, the caller's args kept
    args.beam_width = args.beam_width or CaptionerSettings.model_fields["beam_width"].default
    args.rounds = 1 if args.small else (args.rounds or 3)
    set_threads(args, 1)
    lengths = [6, 10] if args.small else [int(n) for n in args.lengths.split(",")]
    if min(lengths) < 3:
        raise SystemExit("--lengths: at least 3 tokens (the one-step timing needs a prefix of 2)")
    if args.small:
        import open_clip

        open_clip.add_model_config(TINY_COCA)
    captions: list[CaptionRow] = []
    load_at_start = load_average()
    if not args.skip_captioner:
        captions = caption_rows(
            "tiny-coca" if args.small else "coca_ViT-L-14",
            lengths,
            args.rounds,
            args.beam_width,
            args.step_repeats,
        )
    runtimes = [r for r in args.runtimes.split(",") if r]
    towers = (
        [] if args.captions_only else tower_rows(args.small, runtimes, args.tower_rounds, args.skip_captioner)
    )
    return markdown(args, captions, towers, load_at_start)

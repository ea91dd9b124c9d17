"""Image captions from an open_clip CoCa model with beam search, without FastAPI.

Why our own beam search: open_clip's ``CoCa.generate`` needs ``transformers.BeamSearchScorer``,
which transformers 5 removed, so it no longer runs with current transformers. :func:`beam_search`
reproduces what ``generate(image, generation_type="beam_search")`` computed with the transformers
versions it was written for (4.x):

- scores are sums of the decoder's raw logits (open_clip adds logits, not log-probabilities);
- end-of-text is forbidden until the sequence (start token included) is ``min_length`` long;
- a finished hypothesis scores ``sum / length`` (length penalty 1, the end token counted), the
  search stops when no open beam can beat the worst kept hypothesis, or at ``max_length`` tokens,
  where open beams are scored as they stand; the best hypothesis wins.

open_clip's default of 6 beams in 3 groups has no diversity penalty between the groups, so the
groups run identical searches of 6 / 3 = 2 beams each: ``beam_width=2`` gives the same captions at
a third of the cost. Captions are decoded with the model's tokenizer, cut at the first end-of-text
token, stripped of special tokens and trimmed.

The image is encoded once. By default each step runs only the new token through the text tower and
the multimodal decoder, with their keys and values cached per beam
(:mod:`services.captioner.incremental`); ``kv_cache=False`` re-runs both on the whole prefix at every
step, as open_clip does, for comparison.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from open_clip.utils import to_2tuple
from PIL import Image

from services.captioner.incremental import CachedCocaDecoder, unsupported_reason
from services.common.errors import StartupError
from services.common.models.inference import build_image_tower
from services.common.models.open_clip_loader import load_open_clip_model
from services.common.models.weights import ResolvedWeights

log = logging.getLogger(__name__)

START_OF_TEXT = "<start_of_text>"
END_OF_TEXT = "<end_of_text>"
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")


def clean_caption(text: str) -> str:
    """Decoded tokens -> caption: up to the first end-of-text, special tokens removed, trimmed."""
    text = text.split(END_OF_TEXT, 1)[0].replace(START_OF_TEXT, "")
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split()))  # CoCa writes "a dog ."
    return text.strip()


@dataclass(order=True)
class _Hypothesis:
    score: float
    tokens: list[int] = field(compare=False)


class _Hypotheses:
    """The ``width`` best finished sequences of one image (transformers' BeamHypotheses)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.kept: list[_Hypothesis] = []
        self.done = False

    def worst(self) -> float:
        return min(h.score for h in self.kept)

    def add(self, tokens: list[int], score_sum: float, length: int) -> None:
        score = score_sum / length
        if len(self.kept) < self.width:
            self.kept.append(_Hypothesis(score, tokens))
        elif score > self.worst():
            self.kept.remove(min(self.kept))
            self.kept.append(_Hypothesis(score, tokens))

    def is_done(self, best_open_sum: float, length: int) -> bool:
        return len(self.kept) >= self.width and self.worst() >= best_open_sum / length


@torch.inference_mode()
def beam_search(
    step_logits: Any,
    batch: int,
    sot: int,
    eot: int,
    width: int,
    min_length: int,
    max_length: int,
    device: torch.device,
    reorder: Callable[[torch.Tensor], None] | None = None,
) -> list[list[int]]:
    """Beam search for ``batch`` images; ``step_logits(rows, tokens)`` -> next-token logits (R, V)
    for prefixes ``tokens`` (R, L) where ``rows`` (R,) says which image each prefix belongs to.
    ``reorder(index)``, when given, is told before each further step that prefix ``i`` continues
    former prefix ``index[i]`` (always one of the same image), so a decoder can move its caches.
    Returns each image's best token sequence (start token first, end token excluded)."""
    tokens = torch.full((batch * width, 1), sot, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device).repeat_interleave(width)
    # Every beam starts identical: only the first may expand, or the beams would duplicate.
    scores = torch.full((batch, width), -1e9, device=device)
    scores[:, 0] = 0
    scores = scores.view(-1)
    finished = [_Hypotheses(width) for _ in range(batch)]
    while True:
        logits = step_logits(rows, tokens).float()
        if tokens.shape[1] < min_length:
            logits[:, eot] = -float("inf")
        vocab = logits.shape[1]
        candidates = (logits + scores[:, None]).view(batch, width * vocab)
        top_scores, top_ids = torch.topk(candidates, 2 * width, dim=1, largest=True, sorted=True)
        top_beams, top_tokens = top_ids // vocab, top_ids % vocab
        length = tokens.shape[1] + 1  # the sequence length once the new token is appended
        next_scores = torch.zeros(batch, width, device=device)
        next_tokens = torch.full((batch, width), eot, dtype=torch.long, device=device)
        # Finished images' dummy beams continue their own image's first beam.
        next_beams = (torch.arange(batch, device=device) * width)[:, None].repeat(1, width)
        top_scores_l, top_tokens_l, top_beams_l = top_scores.tolist(), top_tokens.tolist(), top_beams.tolist()
        for b in range(batch):
            hyps = finished[b]
            if hyps.done:  # finished images keep feeding dummy beams until all are done
                continue
            slot = 0
            for rank, (score, token, beam) in enumerate(
                zip(top_scores_l[b], top_tokens_l[b], top_beams_l[b], strict=True)
            ):
                source = b * width + beam
                if token == eot:
                    if rank < width:  # only end tokens among the best `width` candidates count
                        hyps.add(tokens[source].tolist(), score, length)
                else:
                    next_scores[b, slot], next_tokens[b, slot], next_beams[b, slot] = score, token, source
                    slot += 1
                if slot == width:
                    break
            hyps.done = hyps.is_done(max(top_scores_l[b]), length)
        scores = next_scores.view(-1)
        tokens = torch.cat([tokens[next_beams.view(-1)], next_tokens.view(-1, 1)], dim=1)
        if all(h.done for h in finished) or tokens.shape[1] >= max_length:
            break
        if reorder is not None:
            reorder(next_beams.view(-1))
    out = []
    for b, hyps in enumerate(finished):
        if not hyps.done:  # the length limit: open beams compete as they stand
            for i in range(width):
                hyps.add(tokens[b * width + i].tolist(), float(scores[b * width + i]), tokens.shape[1])
        # Among equal scores the latest kept wins, as in transformers (stable sort, then pop()).
        out.append(max(reversed(hyps.kept)).tokens)
    return out


class CocaCaptioner:
    """A CoCa model: ``preprocess`` per image on the caller's thread, ``caption`` per batch."""

    def __init__(
        self,
        model: str,
        weights: ResolvedWeights,
        device: torch.device,
        preprocess_cfg: dict[str, Any] | None = None,
        beam_width: int = 2,
        min_length: int = 5,
        max_length: int = 30,
        kv_cache: bool = True,
        runtime: str = "eager",
    ) -> None:
        if max_length <= min_length:
            raise StartupError(f"captioner: max_length ({max_length}) must exceed min_length ({min_length})")
        self.model_id = model
        self.weights = weights
        self.device = device
        net = load_open_clip_model(model, weights, preprocess_cfg=preprocess_cfg)
        if not isinstance(net, open_clip.CoCa):
            raise StartupError(f"captioner: {model!r} is not a CoCa model (it has no caption decoder)")
        self.net = net.to(device)
        self.context_length = int(net.context_length)
        if max_length > self.context_length + 1:
            raise StartupError(
                f"captioner: max_length {max_length} exceeds the model's context of {self.context_length}"
            )
        self.runtime = runtime
        size = to_2tuple(net.visual.image_size)
        self.image_tower = build_image_tower(net.visual, runtime, torch.zeros(1, 3, *size, device=device))
        self.transform = image_transform_v2(PreprocessCfg(**net.visual.preprocess_cfg), is_train=False)
        self.tokenizer = open_clip.get_tokenizer(model)
        self.sot = int(self.tokenizer.sot_token_id)
        self.eot = int(self.tokenizer.eot_token_id)
        self.beam_width = beam_width
        self.min_length = min_length
        self.max_length = max_length
        reason = unsupported_reason(net) if kv_cache else ""
        if reason:
            log.warning("captioner: %s runs without a key/value cache: %s", model, reason)
        #: Whether decoding steps run one new token with cached keys and values (else the whole prefix).
        self.kv_cache = kv_cache and not reason

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image.convert("RGB"))

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> the image tokens the decoder attends to (CoCa._encode_image without the
        latent)."""
        _, image_embs = self.image_tower(pixels.to(self.device))
        return image_embs

    def decoding_step(
        self, image_embs: torch.Tensor
    ) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], Callable[[torch.Tensor], None] | None]:
        """What :func:`beam_search` calls over encoded images, ``(step_logits, reorder)``: with the
        cache a fresh :class:`CachedCocaDecoder` and its reorder, else the towers re-run on the whole
        prefix (no reorder needed). Apart from :meth:`search` so the bench can time one step."""
        if self.kv_cache:
            cached = CachedCocaDecoder(self.net, image_embs, capacity=self.max_length)
            return cached, cached.reorder

        def step_logits(rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            _, token_embs = self.net._encode_text(tokens)
            return self.net.text_decoder(image_embs[rows], token_embs)[:, -1]

        return step_logits, None

    @torch.inference_mode()
    def search(self, image_embs: torch.Tensor) -> list[list[int]]:
        """The beam search over encoded images -> token ids of each image's caption."""
        step_logits, reorder = self.decoding_step(image_embs)
        return beam_search(
            step_logits,
            image_embs.shape[0],
            self.sot,
            self.eot,
            self.beam_width,
            self.min_length,
            self.max_length,
            self.device,
            reorder,
        )

    def generate(self, pixels: torch.Tensor) -> list[list[int]]:
        """(N, C, H, W) -> token ids of each image's caption (start token first)."""
        return self.search(self.encode(pixels))

    def decode(self, tokens: list[int]) -> str:
        return clean_caption(self.tokenizer.decode(tokens))

    def caption(self, pixels: torch.Tensor) -> list[str]:
        return [self.decode(tokens) for tokens in self.generate(pixels)]

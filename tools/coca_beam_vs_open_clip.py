"""Check that services.captioner.coca.beam_search gives the tokens open_clip's CoCa.generate gave.

open_clip's generate needs ``transformers.BeamSearchScorer`` (transformers < 5). Install an old
transformers out of the way and put it first on the path, e.g.:

    pip install --target /tmp/tf455 --no-deps transformers==4.55.4 huggingface_hub==0.34.4 tokenizers==0.21.4
    PYTHONPATH=.:/tmp/tf455 python tools/coca_beam_vs_open_clip.py --models 6

Uses the tiny CoCa config of the tests with random weights, perturbed per model so beams diverge,
and open_clip's default generate arguments (6 beams in 3 groups) against our 2-beam search.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import open_clip
import open_clip.coca_model
import torch

from services.captioner.coca import CocaCaptioner
from services.common.models.weights import ResolvedWeights

TINY = Path(__file__).resolve().parents[1] / "tests" / "captioner" / "tiny-coca.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=12)
    parser.add_argument(
        "--eot-bias", type=float, default=0.0, help="raise the end token's logit (ends earlier)"
    )
    args = parser.parse_args()
    if not open_clip.coca_model._has_transformers:
        sys.exit("open_clip cannot import transformers.BeamSearchScorer here: see the docstring")
    open_clip.add_model_config(TINY)
    torch.set_num_threads(1)
    same = total = ended = 0
    for seed in range(args.models):
        captioner = CocaCaptioner(
            "tiny-coca",
            ResolvedWeights("random", None, "r", "random"),
            torch.device("cpu"),
            max_length=args.max_length,
        )
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in captioner.net.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
            decoder = captioner.net.text_decoder
            decoder.ln_final.bias[0] += 10  # a constant feature, so the bias below is a plain logit offset
            decoder.ln_final.weight[0] = 0
            decoder.text_projection[0, captioner.eot] += args.eot_bias / 10
        pixels = torch.randn(args.images, 3, 64, 64, generator=gen)
        ours = captioner.generate(pixels)
        theirs = captioner.net.generate(pixels, seq_len=args.max_length, num_beams=6, num_beam_groups=3)
        for mine, ref in zip(ours, theirs.tolist(), strict=True):
            if captioner.eot in ref[: args.max_length - 1]:
                ended += 1  # finished before the length limit
            ref = ref[: ref.index(captioner.eot)] if captioner.eot in ref else ref
            total += 1
            same += mine == ref
            if mine != ref:
                print(f"model {seed}: ours {mine} open_clip {ref}")
    print(f"identical token sequences: {same} of {total} ({ended} ended before the length limit)")


if __name__ == "__main__":
    main()

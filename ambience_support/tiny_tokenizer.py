"""A tiny Hugging Face tokenizer for the SigLIP 2 tests, generated offline (the real Gemma tokenizer's
files come from the hub)."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["a", "dog", "cat", "on", "the", "beach", "in", "snow", "red", "car", "photo", "of"]


def write_tokenizer(folder: Path) -> Path:
    """A word-level tokenizer (lower-cased, split on whitespace and punctuation) in the HF layout:
    tokenizer.json and tokenizer_config.json naming the pad token. Ids: <pad> 0, <eos> 1, <unk> 2,
    then WORDS from 3."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<pad>", "eos_token": "<eos>"}))
    return folder

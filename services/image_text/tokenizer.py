"""Text tokenizers of open_clip models, read from local files only.

Models whose open_clip config names a Hugging Face tokenizer (``hf_tokenizer_name``: SigLIP 2's
Gemma tokenizer, 256k tokens) are tokenized by :class:`HubTokenizer` from that tokenizer's
``tokenizer.json`` in a local folder (``ambience models fetch`` puts it in the models dir), with
the ``tokenizers`` library alone: the same Rust tokenizer ``transformers`` wraps, without the
``transformers`` package (hundreds of MB of imports) and never asking the network. What it does
matches open_clip's ``HFTokenizer``: the config's text cleaning, then truncation to the context
length and padding up to it with the tokenizer's pad token (from ``tokenizer_config.json``).
Other models use open_clip's own tokenizer (CLIP's BPE ships inside open_clip).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.errors import WeightsMissingError

if TYPE_CHECKING:
    import torch


class HubTokenizer:
    def __init__(self, folder: Path, context_length: int, clean: str = "whitespace") -> None:
        from open_clip.tokenizer import get_clean_fn
        from tokenizers import Tokenizer

        path = folder / "tokenizer.json"
        if not path.is_file():
            raise WeightsMissingError(f"tokenizer file {path} is missing")
        self.tokenizer = Tokenizer.from_file(str(path))
        self.context_length = context_length
        self.clean = get_clean_fn(clean)
        pad_token = _pad_token(folder / "tokenizer_config.json")
        pad_id = self.tokenizer.token_to_id(pad_token) if pad_token else None
        if pad_id is None:
            pad_token, pad_id = "", 0
        self.tokenizer.enable_truncation(max_length=context_length)
        self.tokenizer.enable_padding(length=context_length, pad_id=pad_id, pad_token=pad_token or "[PAD]")

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        import torch

        batch = [texts] if isinstance(texts, str) else texts
        encoded = self.tokenizer.encode_batch([self.clean(text) for text in batch])
        return torch.tensor([e.ids for e in encoded], dtype=torch.long)


def _pad_token(config_path: Path) -> str:
    """The pad token tokenizer_config.json names (a string or an AddedToken dict), or ''."""
    if not config_path.is_file():
        return ""
    pad: Any = json.loads(config_path.read_text()).get("pad_token") or ""
    return str(pad.get("content", "")) if isinstance(pad, dict) else str(pad)


def text_config(model: str) -> dict[str, Any]:
    import open_clip

    return dict((open_clip.get_model_config(model) or {}).get("text_cfg", {}))


def load_tokenizer(model: str, folder: Path | None) -> Any:
    """``model``'s tokenizer: a :class:`HubTokenizer` from ``folder`` when the model names a HF
    tokenizer, else open_clip's own."""
    cfg = text_config(model)
    if cfg.get("hf_tokenizer_name"):
        if folder is None:
            raise WeightsMissingError(f"{model} needs its tokenizer files, and no folder holds them")
        clean = str(cfg.get("tokenizer_kwargs", {}).get("clean", "whitespace"))
        return HubTokenizer(folder, int(cfg.get("context_length", 64)), clean)
    import open_clip

    return open_clip.get_tokenizer(model)

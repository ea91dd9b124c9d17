"""Checkpoint files in every layout the model loaders accept (shared by the model-loading and
captioner tests)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def checkpoint_variants(state: dict[str, torch.Tensor], folder: Path) -> dict[str, Path]:
    """The layouts published checkpoints come in."""
    paths = {
        "plain state dict (.pth / pytorch_model.bin)": folder / "plain.pth",
        "safetensors (HF model.safetensors)": folder / "model.safetensors",
        "training checkpoint {'state_dict': module.*}": folder / "train.pt",
    }
    torch.save(state, paths["plain state dict (.pth / pytorch_model.bin)"])
    save_file({k: v.contiguous() for k, v in state.items()}, paths["safetensors (HF model.safetensors)"])
    torch.save(
        {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}},
        paths["training checkpoint {'state_dict': module.*}"],
    )
    return paths

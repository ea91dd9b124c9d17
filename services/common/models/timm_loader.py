"""timm models: where a hub tag's file lives, and building the architecture with its weights."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from services.common.errors import StartupError
from services.common.models.weights import RANDOM_SEED, ResolvedWeights, WeightsFile, safe_name

if TYPE_CHECKING:
    import torch


def timm_weights_file(service: str, model: str, tag: str, models_dir: Path, env_var: str = "") -> WeightsFile:
    """The hub file of timm model ``model`` with pretrained ``tag`` ('' = the model's default)."""
    import timm.models

    name = f"{model.split('.')[0]}.{tag}" if tag else model
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise StartupError(
            f"{service}: timm knows no pretrained weights {name!r} (model {model!r}, tag {tag!r})"
        )
    hf_repo = cfg.hf_hub_id or ""
    url = cfg.url or ""
    filename = "model.safetensors" if hf_repo else (url.rsplit("/", 1)[-1] or "model.pth")
    return WeightsFile(
        service=service,
        description=f"timm {cfg.architecture}.{cfg.tag}",
        target=models_dir / service / safe_name(f"{cfg.architecture}.{cfg.tag}") / filename,
        hf_repo=hf_repo,
        hf_filenames=("model.safetensors", "pytorch_model.bin") if hf_repo else (),
        url=url,
        env_var=env_var,
    )


def load_timm_model(model: str, weights: ResolvedWeights) -> torch.nn.Module:
    """A timm model whose forward returns pooled features (classifier removed), in eval mode.

    Checkpoint formats accepted (via timm.models.load_checkpoint, strict): a plain state dict
    (.pth/.bin, timm's GitHub releases and HF ``pytorch_model.bin``), ``model.safetensors`` (HF), and
    training checkpoints holding ``state_dict`` / ``state_dict_ema`` / ``model``, with or without
    ``module.`` prefixes. The state dict must match the architecture exactly, head included.
    """
    import timm
    import timm.models
    import torch

    try:
        if weights.random:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_SEED)
                net = timm.create_model(model, pretrained=False, num_classes=0)
        else:
            net = timm.create_model(model, pretrained=False)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise StartupError(f"timm cannot build model {model!r}: {exc}") from exc
    if weights.path is not None:
        try:
            timm.models.load_checkpoint(net, str(weights.path), strict=True)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise StartupError(f"checkpoint {weights.path} does not fit timm model {model!r}: {exc}") from exc
        net.reset_classifier(0)
    return net.eval()

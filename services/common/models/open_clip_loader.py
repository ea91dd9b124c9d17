"""open_clip models: extra model configs, where a hub tag's file lives, what the tag sets for the
build (activation, preprocessing), and building the model with its weights."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.errors import StartupError
from services.common.models.weights import RANDOM_SEED, ResolvedWeights, WeightsFile, safe_name

if TYPE_CHECKING:
    import torch

#: The pretrained-config keys that set preprocessing (normalisation and resize mode).
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


def register_model_configs(service: str, path: str) -> None:
    """Register an extra open_clip model config JSON (file or folder) before building ('' = none)."""
    if not path:
        return
    import open_clip

    if not Path(path).exists():
        raise StartupError(f"{service}: model_config_path {path} does not exist")
    open_clip.add_model_config(path)


def open_clip_weights_file(
    service: str, model: str, tag: str, models_dir: Path, env_var: str = ""
) -> WeightsFile:
    """The hub file of open_clip ``model`` with pretrained ``tag`` (e.g. ViT-B-16 / openai)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise StartupError(
            f"{service}: open_clip has no pretrained tag {tag!r} for {model!r} (known: {known})"
        )
    # 'org/repo/file.bin', or 'org/repo/' for the repo with open_clip's default file names
    hf_repo, hf_file = os.path.split(cfg.get("hf_hub", ""))
    filenames = (hf_file,) if hf_file else ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    url = cfg.get("url", "")
    local = filenames[0] if hf_repo else (url.rsplit("/", 1)[-1] or "open_clip.bin")
    return WeightsFile(
        service=service,
        description=f"open_clip {model} / {tag}",
        target=models_dir / service / safe_name(f"{model}.{tag}") / local,
        hf_repo=hf_repo,
        hf_filenames=filenames if hf_repo else (),
        url=url,
        env_var=env_var,
    )


@dataclass(frozen=True)
class OpenClipBuild:
    """How to build an open_clip model for its weights."""

    quick_gelu: bool = False
    #: Overrides of the model config's preprocessing (None: the config's own).
    preprocess: dict[str, Any] | None = None


def open_clip_build(
    model: str, tag: str, weights: ResolvedWeights, quick_gelu: bool = False
) -> OpenClipBuild:
    """Hub weights bring their own settings (activation, normalisation, resize mode), which win;
    a local file or random weights keep the model config's and the ``quick_gelu`` setting."""
    if weights.kind != "hub":
        return OpenClipBuild(quick_gelu)
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    return OpenClipBuild(
        quick_gelu or bool(cfg.get("quick_gelu", False)), {k: cfg[k] for k in PREPROCESS_KEYS if k in cfg}
    )


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives are zip files with a ``constants.pkl`` (pickled state dicts are not)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("/constants.pkl") for name in zf.namelist())


def initialise_open_clip_leftovers(net: torch.nn.Module) -> torch.nn.Module:
    """Initialise what open_clip leaves as ``torch.empty`` memory: CoCa's text decoder
    (``MultimodalTransformer``) allocates ``text_projection`` uninitialised and open_clip never
    calls its ``init_parameters`` (which would fail: it reads a ``transformer`` attribute the class
    lacks), so random-weight captioners produced whatever the allocator held (different in every
    process, garbage logits). Same init as open_clip's text tower; call under the random seed."""
    import torch
    from open_clip.transformer import MultimodalTransformer

    for module in net.modules():
        if isinstance(module, MultimodalTransformer) and module.text_projection is not None:
            torch.nn.init.normal_(module.text_projection, std=module.width**-0.5)
    return net


def load_open_clip_model(
    model: str,
    weights: ResolvedWeights,
    quick_gelu: bool = False,
    preprocess_cfg: dict[str, Any] | None = None,
) -> torch.nn.Module:
    """An open_clip model (image and text towers) in eval mode.

    Checkpoint formats accepted (strict): open_clip state dicts (.bin/.pt pickles and .safetensors, as
    published on the HF hub), checkpoints holding ``state_dict`` (open_clip training output) with or
    without ``module.`` prefixes, and OpenAI's TorchScript archives (the ``openai`` URL downloads).
    """
    import open_clip
    import torch

    kwargs: dict[str, Any] = {"force_quick_gelu": quick_gelu, "force_preprocess_cfg": preprocess_cfg or {}}
    try:
        if weights.random:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_SEED)
                net = initialise_open_clip_leftovers(open_clip.create_model(model, pretrained=None, **kwargs))
        else:
            net = open_clip.create_model(model, pretrained=None, **kwargs)
    except RuntimeError as exc:  # open_clip: "Model config for ... not found"
        raise StartupError(f"open_clip cannot build model {model!r}: {exc}") from exc
    if weights.path is not None:
        try:
            if is_torchscript_archive(weights.path):  # OpenAI's original release (e.g. ViT-B-16.pt)
                state = torch.jit.load(str(weights.path), map_location="cpu").state_dict()
                # Drop what the archive holds besides the weights: OpenAI's int attributes and
                # buffers the model builds itself (attention masks), never parameters.
                rebuilt = {name for name, _ in net.named_buffers()} - set(net.state_dict())
                extra = {"input_resolution", "context_length", "vocab_size", *rebuilt}
                net.load_state_dict({k: v for k, v in state.items() if k not in extra}, strict=True)
            else:
                open_clip.load_checkpoint(net, str(weights.path), strict=True)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise StartupError(
                f"checkpoint {weights.path} does not fit open_clip model {model!r}: {exc}"
            ) from exc
    return net.eval()

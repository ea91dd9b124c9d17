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


#: The files of a Hugging Face tokenizer that :class:`~services.image_text.tokenizer.HubTokenizer` reads.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def hf_tokenizer_name(model: str) -> str:
    """The HF hub tokenizer open_clip model ``model`` names in its config ('' = open_clip's own)."""
    import open_clip

    config = open_clip.get_model_config(model) or {}
    return str(config.get("text_cfg", {}).get("hf_tokenizer_name", ""))


def tokenizer_folder(service: str, name: str, models_dir: Path) -> Path:
    """Where the files of HF tokenizer ``name`` live in the models dir."""
    return models_dir / service / "tokenizers" / safe_name(name)


def open_clip_tokenizer_files(
    service: str, model: str, models_dir: Path, env_var: str = ""
) -> list[WeightsFile]:
    """The tokenizer files ``ambience models fetch`` keeps for ``model`` (none when the model uses
    open_clip's built-in tokenizer): downloaded once, read from the models dir from then on."""
    name = hf_tokenizer_name(model)
    if not name:
        return []
    folder = tokenizer_folder(service, name, models_dir)
    return [
        WeightsFile(
            service=service,
            description=f"{model} tokenizer ({name}: {filename})",
            target=folder / filename,
            hf_repo=name,
            hf_filenames=(filename,),
            env_var=env_var,
        )
        for filename in TOKENIZER_FILES
    ]


def _tower_from_safetensors(
    model: str, path: Path, tower: str, kwargs: dict[str, Any]
) -> torch.nn.Module | None:
    """Tower ``tower`` ('visual' or 'text') of ``model`` with only its own tensors read from the
    safetensors file ``path``: the model is laid out on the meta device (no memory), the tower is
    given real storage and loaded strictly. None when that cannot be done exactly (a tower with
    buffers the file does not hold, keys that need open_clip's conversions): the caller then loads
    the whole model."""
    import open_clip
    import torch
    from safetensors import safe_open

    with torch.device("meta"):
        net = open_clip.create_model(model, pretrained=None, device="meta", **kwargs)
    if tower == "visual":
        module, prefixes = net.visual, ("visual.",)
    elif hasattr(net, "text"):  # CustomTextCLIP (SigLIP, SigLIP 2): one text module
        module, prefixes = net.text, ("text.",)
    else:
        return None
    with safe_open(str(path), framework="pt") as fh:
        keys = [k for k in fh.keys() if k.startswith(prefixes)]  # noqa: SIM118 (safe_open has no iterator)
        wanted = {k[len(prefixes[0]) :] for k in keys}
        if wanted != set(module.state_dict()):
            return None
        module = module.to_empty(device="cpu")
        if any(b.is_meta for b in module.buffers()):
            return None
        module.load_state_dict({k[len(prefixes[0]) :]: fh.get_tensor(k) for k in keys}, strict=True)
    return module.eval()


def load_open_clip_tower(
    model: str,
    weights: ResolvedWeights,
    tower: str,
    quick_gelu: bool = False,
    preprocess_cfg: dict[str, Any] | None = None,
) -> Any:
    """One tower of an open_clip model: ``visual`` (the image tower, ``visual.preprocess_cfg`` set)
    or ``text`` (the model with its image tower dropped: ``encode_text`` works, nothing else).

    Indexing needs the image tower alone, and a text tower can be most of a model (SigLIP 2's
    256k-token vocabulary is about 200M parameters): each is loaded without the other. From a
    safetensors checkpoint only the tower's tensors are read; otherwise the whole model is built and
    the other tower released (a transient of the whole model at load time)."""
    kwargs: dict[str, Any] = {"force_quick_gelu": quick_gelu, "force_preprocess_cfg": preprocess_cfg or {}}
    if weights.path is not None and weights.path.suffix == ".safetensors":
        try:
            module = _tower_from_safetensors(model, weights.path, tower, kwargs)
        except RuntimeError as exc:  # open_clip: "Model config for ... not found", a bad file
            raise StartupError(
                f"checkpoint {weights.path} does not fit open_clip model {model!r}: {exc}"
            ) from exc
        if module is not None:
            return module if tower == "visual" else TextOnly(module)
    net = load_open_clip_model(model, weights, quick_gelu, preprocess_cfg)
    if tower == "visual":
        return net.visual
    net.visual = None
    return net


class TextOnly:
    """A CustomTextCLIP text module behind ``encode_text``, as the whole model offers it."""

    def __init__(self, text: torch.nn.Module) -> None:
        self.text = text

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        import torch

        features = self.text(tokens)
        return torch.nn.functional.normalize(features, dim=-1) if normalize else features

"""Model loading shared by every model service (docs/models.md).

What a model service gets from here:

- :class:`ModelServiceSettings`: ``model`` (architecture), ``weights`` (``""`` = the model's
  default hub tag, a hub tag, a local checkpoint path, or ``random``), ``device``, batching knobs.
- :func:`resolve_weights`: settings -> :class:`ResolvedWeights` (a checkpoint file on disk plus its
  sha256 digest, or random weights). Hub weights are downloaded into ``AMBIENCE_MODELS_DIR`` when the
  machine is online; when they cannot be had the service refuses to start with
  :class:`~services.common.errors.WeightsMissingError` (exit code 2) naming the missing file and the
  fix. Random weights need ``AMBIENCE_ALLOW_RANDOM_WEIGHTS=1`` (tests only) and are seeded, so a
  restarted test service computes the same vectors.
- :class:`WeightsFile` and :func:`required_weights`: what each registered service needs on disk
  (name, hub repo / URL, target path, optional sha256) so ``ambience models fetch`` can iterate them;
  :func:`fetch_weights` downloads one.
- :func:`timm_weights_file` / :func:`open_clip_weights_file`: where a timm or open_clip hub tag
  lives and where it is stored locally; :func:`load_timm_model` / :func:`load_open_clip_model` build
  the architecture and load the weights strictly.
- :class:`ImageEmbeddingSession` / :class:`TextEmbeddingSession`: the protocol a model backend
  implements (preprocess on the caller's thread, embed a batch), and :class:`MicroBatcher`, which
  runs one forward pass for all requests that are waiting at the same time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
from pydantic import Field

from services.common.errors import StartupError, WeightsMissingError
from services.common.fetch import HostUnreachableError, download
from services.common.inference import RuntimeName, runtime_field
from services.common.settings import CommonSettings, ServiceSettings

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

RANDOM = "random"
#: Random weights are drawn from this seed, so every process builds the same "random" model.
RANDOM_SEED = 0
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".npz", ".tar")


class ModelServiceSettings(ServiceSettings):
    """Settings every model service has (subclasses override the defaults and the env prefix)."""

    model: str = Field("", description="Model architecture name (timm / open_clip name)")
    weights: str = Field(
        "",
        description="'' = the model's default pretrained tag, a hub tag, a local checkpoint file, "
        "or 'random' (tests only, needs AMBIENCE_ALLOW_RANDOM_WEIGHTS=1)",
    )
    device: str = Field("auto", description="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...")
    max_batch: int = Field(32, ge=1, description="Most images one forward pass takes (micro-batching)")
    batch_wait_ms: float = Field(
        0.0,
        ge=0,
        description="How long a forward pass waits for more requests to join its batch (0: only those "
        "already waiting are batched, no added latency)",
    )
    torch_threads: int = Field(0, ge=0, description="CPU threads for torch (0 = torch's default)")
    runtime: RuntimeName = runtime_field()
    #: What ``runtime=auto`` means on CPU for this service (measured: docs/models.md).
    cpu_runtime: ClassVar[str] = "eager"

    def weights_env_var(self) -> str:
        return f"{self.env_prefix()}WEIGHTS"


# -- weight files -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsFile:
    """One file a service needs on disk, and where to get it."""

    service: str
    description: str
    target: Path
    hf_repo: str = ""
    #: Tried in order (e.g. a safetensors file first, then the pickled one).
    hf_filenames: tuple[str, ...] = ()
    url: str = ""
    sha256: str = ""
    #: The setting that points the service at a local file instead.
    env_var: str = ""

    def sources(self) -> list[str]:
        # HF_ENDPOINT: the hub's own setting for a mirror (also how tests serve a local hub).
        hub = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
        out = [f"{hub}/{self.hf_repo}/resolve/main/{name}" for name in self.hf_filenames]
        return [*out, self.url] if self.url else out

    def destination(self, url: str) -> Path:
        """Where the file from ``url`` is saved: a hub fallback keeps its own name (a pickled
        ``pytorch_model.bin`` must not be saved as ``model.safetensors``)."""
        name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
        return self.target.with_name(name) if name in self.hf_filenames else self.target

    def present(self) -> Path | None:
        """The downloaded file, whichever of the sources it came from; None when there is none."""
        for path in dict.fromkeys([self.target, *(self.destination(url) for url in self.sources())]):
            if path.is_file():
                return path
        return None

    def fix(self) -> str:
        fixes = [
            f"`ambience models fetch {self.service}` (on a machine with internet access, then copy "
            f"{self.target.parent} here)"
        ]
        if self.env_var:
            fixes.append(f"set {self.env_var}=/path/to/checkpoint to use a local file")
        fixes.append('see "Offline" in the README')
        return "; or ".join(fixes)


def sha256_file(path: Path) -> str:
    """sha256 of a file, cached in ``<file>.sha256`` keyed by size and mtime (checkpoints are big)."""
    stat = path.stat()
    key = f"{stat.st_size}:{stat.st_mtime_ns}"
    cache = path.with_name(path.name + ".sha256")
    try:
        cached_key, digest = cache.read_text().split()
        if cached_key == key:
            return digest
    except (OSError, ValueError):
        pass
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with contextlib.suppress(OSError):  # a read-only models dir is fine; we hash again next time
        cache.write_text(f"{key} {digest}\n")
    return digest


def _download(url: str, dest: Path, timeout: float, sha256: str = "") -> None:
    # Resumable, verified, progress bar: services/common/fetch.py.
    download(url, dest, sha256=sha256, timeout=timeout, description=f"{dest.parent.name}/{dest.name}")


def fetch_weights(wf: WeightsFile, timeout: float = 30.0) -> Path:
    """Make sure the weights file exists (download it if not) and matches its sha256. Returns its
    path: ``wf.target``, or the name of the hub fallback it was downloaded as."""
    path = wf.present() or _download_first_source(wf, timeout)
    if wf.sha256 and sha256_file(path) != wf.sha256:
        raise WeightsMissingError(
            f"{wf.service}: {path} does not have the expected sha256 {wf.sha256}; delete it and "
            f"run `ambience models fetch {wf.service}` again"
        )
    return path


def _download_first_source(wf: WeightsFile, timeout: float) -> Path:
    wf.target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    unreachable: set[str] = set()
    for url in wf.sources():
        host = urllib.parse.urlsplit(url).hostname or ""
        if host in unreachable:
            continue  # fail fast: the next file of a host that does not resolve will not either
        dest = wf.destination(url)
        try:
            log.info("%s: downloading %s -> %s", wf.service, url, dest)
            _download(url, dest, timeout, wf.sha256)
            return dest
        except HostUnreachableError as exc:
            unreachable.add(host)
            errors.append(str(exc))
        except Exception as exc:  # try the next source; report all of them if none works
            errors.append(f"{url}: {exc}")
    if unreachable:
        raise WeightsMissingError(
            f"{wf.service}: the weights {wf.description} are not on this machine ({wf.target}) and "
            f"cannot be downloaded: {'; '.join(errors)}. Fix: {wf.fix()}"
        )
    raise WeightsMissingError(
        f"{wf.service}: weights file {wf.target} ({wf.description}) is missing and could not be "
        f"downloaded ({'; '.join(errors) or 'no download source known'}). Fix: {wf.fix()}"
    )


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


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
        target=models_dir / service / _safe_name(f"{cfg.architecture}.{cfg.tag}") / filename,
        hf_repo=hf_repo,
        hf_filenames=("model.safetensors", "pytorch_model.bin") if hf_repo else (),
        url=url,
        env_var=env_var,
    )


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
        target=models_dir / service / _safe_name(f"{model}.{tag}") / local,
        hf_repo=hf_repo,
        hf_filenames=filenames if hf_repo else (),
        url=url,
        env_var=env_var,
    )


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a model's weights come from."""

    kind: str  # "hub" | "file" | "random"
    path: Path | None
    digest: str  # sha256 of the checkpoint, or "random-seed0"
    source: str  # the hub tag or file path, for /stats

    @property
    def random(self) -> bool:
        return self.kind == RANDOM

    def info(self) -> dict[str, Any]:
        """The /health and /stats fields (``"weights": "random"`` for random weights)."""
        out: dict[str, Any] = {"weights": RANDOM if self.random else self.kind}
        if not self.random:
            out["weights_source"] = self.source
            out["weights_sha256"] = self.digest
        return out


def looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.endswith(_CHECKPOINT_SUFFIXES) or value.startswith("~")


def resolve_weights(
    settings: ModelServiceSettings, hub_file: Callable[[str], WeightsFile], default_tag: str = ""
) -> ResolvedWeights:
    """Decide which checkpoint to load for ``settings.weights``; download hub weights if needed.

    ``hub_file(tag)`` names the file of a hub tag (see :func:`timm_weights_file`).
    Raises WeightsMissingError (exit 2) when no weights can be had, StartupError for bad settings.
    """
    return resolve_weights_value(
        settings.service_name, settings.weights_env_var(), settings.weights, hub_file, default_tag
    )


def resolve_weights_value(
    service: str, env_var: str, value: str, hub_file: Callable[[str], WeightsFile], default_tag: str = ""
) -> ResolvedWeights:
    """:func:`resolve_weights` for a weights setting of any name (``env_var`` holds ``value``), for
    services whose weights are not their ``WEIGHTS`` setting (e.g. local_features' HardNet8)."""
    value = value.strip()
    common = CommonSettings()
    if value == RANDOM:
        if not common.allow_random_weights:
            raise StartupError(
                f"{service}: {env_var}=random is for tests only; "
                "it also needs AMBIENCE_ALLOW_RANDOM_WEIGHTS=1"
            )
        log.warning("%s: using RANDOM weights (tests only): results are meaningless", service)
        return ResolvedWeights(RANDOM, None, f"random-seed{RANDOM_SEED}", RANDOM)
    if looks_like_path(value):
        path = Path(value).expanduser()
        if not path.is_file():
            raise WeightsMissingError(
                f"{service}: weights file {path} (set by {env_var}) does not exist. Fix: point {env_var} at "
                f"an existing checkpoint, or unset it to use the default pretrained weights "
                f"(`ambience models fetch {service}`)"
            )
        return ResolvedWeights("file", path, sha256_file(path), str(path))
    wf = hub_file(value or default_tag)
    if wf.present() is None and not common.download_models:
        raise WeightsMissingError(
            f"{service}: weights file {wf.target} ({wf.description}) is missing and downloads are off "
            f"(AMBIENCE_DOWNLOAD_MODELS=0). Fix: {wf.fix()}"
        )
    path = fetch_weights(wf)
    return ResolvedWeights("hub", path, sha256_file(path), wf.description)


def required_weights(service: str, settings: ServiceSettings | None = None) -> list[WeightsFile]:
    """Every weights file registered service ``service`` needs with its current settings (env).

    Services declare a ``weights`` function in services.registry (``"module:function"`` taking the
    service's settings, or None for the defaults from the environment). Services that load a local
    file or random weights need nothing fetched and return an empty list.
    """
    from services.registry import SERVICES

    info = SERVICES[service]
    if not info.weights:
        return []
    module, _, func = info.weights.partition(":")
    return list(getattr(importlib.import_module(module), func)(settings))


# -- loading --------------------------------------------------------------------------------------------


def select_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StartupError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return device


def configure_torch(settings: ModelServiceSettings) -> None:
    import torch

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives are zip files with a ``constants.pkl`` (pickled state dicts are not)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("/constants.pkl") for name in zf.namelist())


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


# -- sessions -------------------------------------------------------------------------------------------


class ImageEmbeddingSession(Protocol):
    """A loaded image model. ``preprocess`` runs on the request's thread (in parallel, no torch);
    ``embed_images`` runs one forward pass for a batch (the micro-batcher's worker calls it)."""

    model_id: str
    dim: int
    weights: ResolvedWeights
    device: torch.device

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """RGB image -> the model's input pixels, (H, W, 3) uint8 (resized and cropped)."""
        ...

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, dim) float32, L2-normalised rows."""
        ...


class PixelPipeline:
    """A torchvision eval transform split in two. The PIL steps (resize, crop, mode) run on the
    request threads and give uint8 pixels; ToTensor + Normalize run batched on the model's thread.

    Only that one thread calls into torch, so request threads never start OpenMP teams of their own
    that spin against the forward pass for the same cores, and uint8 pixels (4x smaller than float)
    are what travels to the device.
    """

    def __init__(self, transform: Any) -> None:
        import torch

        steps = list(getattr(transform, "transforms", [transform]))
        cut = next((i for i, step in enumerate(steps) if "ToTensor" in type(step).__name__), None)
        if cut is None:
            raise ValueError(f"preprocessing without a ToTensor step is not supported: {transform}")
        self.pil_steps = steps[:cut]
        rest = steps[cut + 1 :]
        norm = rest.pop() if rest and type(rest[-1]).__name__ == "Normalize" else None
        if rest:
            raise ValueError(f"unsupported tensor steps after ToTensor: {rest}")
        mean = norm.mean if norm is not None else (0.0, 0.0, 0.0)
        std = norm.std if norm is not None else (1.0, 1.0, 1.0)
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1)

    def pixels(self, image: Image.Image) -> np.ndarray:
        import numpy as np

        for step in self.pil_steps:
            image = step(image)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)

    def to_tensor(self, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        import torch

        x = torch.tensor(batch, dtype=torch.uint8).to(device).permute(0, 3, 1, 2).float().div_(255)
        return (x - self.mean.to(device)) / self.std.to(device)


class TextEmbeddingSession(Protocol):
    """A loaded text model sharing the image model's embedding space (CLIP)."""

    def tokenize(self, text: str) -> torch.Tensor:
        """Text -> token ids (context_length,); longer texts are truncated to the context."""
        ...

    def embed_texts(self, tokens: torch.Tensor) -> np.ndarray:
        """(N, context_length) -> (N, dim) float32, L2-normalised rows."""
        ...


# -- micro-batching ---------------------------------------------------------------------------------------

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0

    def as_dict(self) -> dict[str, Any]:
        mean = self.items / self.batches if self.batches else 0.0
        return {
            "batches": self.batches,
            "items": self.items,
            "mean_batch": round(mean, 2),
            "largest_batch": self.largest,
        }


@dataclass
class _Job(Generic[T, R]):
    item: T
    future: Future[R] = field(default_factory=Future)


class MicroBatcher(Generic[T, R]):
    """Runs ``fn(items) -> results`` on one worker thread for every item submitted meanwhile.

    Callers (request threads) block in :meth:`submit`. The worker takes every job waiting when it
    becomes free, up to ``max_batch`` (and waits ``max_wait_s`` for more when fewer are there), so a
    lone request runs at once and a burst of requests shares forward passes. Exceptions raised by
    ``fn`` reach every caller of that batch.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        max_batch: int = 32,
        max_wait_s: float = 0.0,
        name: str = "batcher",
    ) -> None:
        self._fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._queue: queue.Queue[_Job[T, R] | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> R:
        return self.submit_many([item])[0]

    def submit_many(self, items: Sequence[T]) -> list[R]:
        """Queue several items (they may share batches with other callers); wait for all."""
        if self._closed:
            raise RuntimeError("the model is shut down")
        jobs: list[_Job[T, R]] = [_Job(item) for item in items]
        for job in jobs:
            self._queue.put(job)
        return [job.future.result() for job in jobs]

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _collect(self, first: _Job[T, R]) -> tuple[list[_Job[T, R]], bool]:
        jobs, stop = [first], False
        deadline = time.monotonic() + self.max_wait_s
        while len(jobs) < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            jobs.append(job)
        return jobs, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            jobs, stop = self._collect(first)
            try:
                results = self._fn([job.item for job in jobs])
                if len(results) != len(jobs):
                    raise RuntimeError(
                        f"batch function returned {len(results)} results for {len(jobs)} items"
                    )
            except BaseException as exc:  # hand the failure to the waiting callers
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.items += len(jobs)
            self.stats.largest = max(self.stats.largest, len(jobs))
            for job, result in zip(jobs, results, strict=True):
                job.future.set_result(result)
        while True:  # fail whatever is still queued after close()
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.future.set_exception(RuntimeError("the model is shut down"))


def describe_session(
    session: ImageEmbeddingSession, batcher: MicroBatcher[Any, Any] | None
) -> dict[str, Any]:
    """The /health and /stats fields of a model service."""
    out: dict[str, Any] = {
        "model": session.model_id,
        "dim": session.dim,
        "device": str(session.device),
        "runtime": getattr(session, "runtime", "eager"),
        **session.weights.info(),
    }
    if batcher is not None:
        out["batching"] = batcher.stats.as_dict()
    return out


def metadata_for(session: ImageEmbeddingSession) -> dict[str, Any]:
    """Store metadata fields that tie stored vectors to the model that made them."""
    return {"model": session.model_id, "weights_sha256": session.weights.digest, "dim": session.dim}


def dumps_weights(files: list[WeightsFile]) -> str:
    """Human/JSON listing of weights files (for ``ambience models list``)."""
    return json.dumps([{**f.__dict__, "target": str(f.target)} for f in files], indent=2)

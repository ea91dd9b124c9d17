"""Weights files: what a service needs on disk, downloading it, and resolving a weights setting.

A weights setting is ``""`` (the model's default hub tag), a hub tag, a local checkpoint path, or
``random``. :func:`resolve_weights_value` turns it into :class:`ResolvedWeights` (a checkpoint on disk
plus its sha256, or random weights). Hub weights are downloaded into ``AMBIENCE_MODELS_DIR`` when the
machine is online; when they cannot be had the service refuses to start with
:class:`~services.common.errors.WeightsMissingError` (exit code 2) naming the missing file and the
fix. Random weights need ``AMBIENCE_ALLOW_RANDOM_WEIGHTS=1`` (tests only) and are seeded, so a
restarted test service computes the same vectors.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.errors import StartupError, WeightsMissingError
from services.common.models.fetch import HostUnreachableError, download
from services.common.settings import CommonSettings

log = logging.getLogger(__name__)

RANDOM = "random"
#: Random weights are drawn from this seed, so every process builds the same "random" model.
RANDOM_SEED = 0
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".npz", ".tar")


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
    # Resumable, verified, progress bar: services/common/models/fetch.py.
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


def ensure_weights_file(wf: WeightsFile) -> Path:
    """A models-dir file: used when present, downloaded when AMBIENCE_DOWNLOAD_MODELS allows, else
    WeightsMissingError (exit 2) naming the file and the fix."""
    if wf.present() is None and not CommonSettings().download_models:
        raise WeightsMissingError(
            f"{wf.service}: weights file {wf.target} ({wf.description}) is missing and downloads are off "
            f"(AMBIENCE_DOWNLOAD_MODELS=0). Fix: {wf.fix()}"
        )
    return fetch_weights(wf)


def safe_name(text: str) -> str:
    """``text`` as one path component (hub tags hold '/' and ':')."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


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


def names_hub_weights(value: str) -> bool:
    """Whether a weights setting names hub weights (not ``random``, not a local file)."""
    value = value.strip()
    return value != RANDOM and not looks_like_path(value)


def resolve_weights_value(
    service: str, env_var: str, value: str, hub_file: Callable[[str], WeightsFile], default_tag: str = ""
) -> ResolvedWeights:
    """Decide which checkpoint to load for the weights setting ``env_var`` (holding ``value``);
    download hub weights if needed. ``hub_file(tag)`` names the file of a hub tag.

    Raises WeightsMissingError (exit 2) when no weights can be had, StartupError for bad settings.
    """
    value = value.strip()
    if value == RANDOM:
        if not CommonSettings().allow_random_weights:
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
    path = ensure_weights_file(wf)
    return ResolvedWeights("hub", path, sha256_file(path), wf.description)

"""Runtime ``onnx`` without torch: the image tower served from a cached ONNX file.

``import torch`` alone holds about 500 MB in every process (the CUDA build maps its libraries at
import); a service whose image model is a 4.7M-parameter CNN then spends most of its memory on it.
Under runtime ``onnx`` global_features and image_text serve their image tower through ONNX Runtime
from a file exported once, and their serving process never imports torch:

- The export runs in a child process (:mod:`.onnx_export`, ``python -m``): it builds the tower
  exactly as the eager runtime does, exports it, checks ONNX Runtime against PyTorch on a random
  batch, and writes ``<models_dir>/<service>/onnx/<model>-<key>.onnx`` (``AMBIENCE_ONNX_DIR``:
  ``<onnx_dir>/<service>/``) with a JSON sidecar.
- The key hashes what decides the graph: the service, the settings that choose the model (model,
  weights, pooling, ...), a local weights file's size and mtime, the opset, :data:`EXPORT_VERSION`
  and the installed torch / timm / open_clip / onnx versions. The sidecar also records the weights
  file the child resolved (hub tags); a changed file makes the export stale. A missing or stale
  export is made again at start-up (the service logs the child's progress); concurrent starts of
  the same export wait on one file lock.
- The sidecar carries what serving needs without torch: the preprocessing plan
  (:mod:`.preprocess`), the output width and the resolved weights (the store's metadata records
  their digest, the same as under eager). :class:`OnnxImageSession` preprocesses with PIL, normalises
  with numpy, runs the graph and L2-normalises the output rows.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from services.common.errors import StartupError, WeightsMissingError
from services.common.models.onnx_export import ERROR_MARK, file_stat
from services.common.models.preprocess import PreprocessPlan
from services.common.models.weights import ResolvedWeights, looks_like_path, safe_name
from services.common.settings import CommonSettings, ServiceSettings

log = logging.getLogger(__name__)

#: Bump when the export code changes what a file holds: every cached export is made again.
EXPORT_VERSION = 1
OPSET = 17
EXPORT_MODULE = "services.common.models.onnx_export"
_VERSIONED_PACKAGES = ("torch", "timm", "open_clip_torch", "onnx")


def cuda_available() -> bool:
    """Whether the CUDA driver sees a device, asked without torch (CUDA_VISIBLE_DEVICES applies)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def device_kind(device: str) -> str:
    """``cpu`` or ``cuda`` for a DEVICE setting (``auto``: cuda when the driver sees a device)."""
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return device.split(":", 1)[0]


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


@dataclass(frozen=True)
class ExportPlan:
    """Where an export of these settings lives, and the fields its key hashes."""

    fields: dict[str, Any]
    key: str
    onnx: Path
    sidecar: Path

    @classmethod
    def of(cls, settings: ServiceSettings, builder: str, setting_names: tuple[str, ...]) -> ExportPlan:
        values = {name: getattr(settings, name) for name in setting_names}
        weights = str(values.get("weights", "")).strip()
        fields: dict[str, Any] = {
            "service": settings.service_name,
            "builder": builder,
            "settings": values,
            "weights_file": file_stat(Path(weights).expanduser()) if looks_like_path(weights) else None,
            "opset": OPSET,
            "export_version": EXPORT_VERSION,
            "packages": {name: _package_version(name) for name in _VERSIONED_PACKAGES},
        }
        key = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]
        common = CommonSettings()
        folder = (
            common.onnx_dir / settings.service_name
            if common.onnx_dir is not None
            else common.models_dir / settings.service_name / "onnx"
        )
        stem = f"{safe_name(str(values.get('model', 'model')))}-{key}"
        return cls(fields, key, folder / f"{stem}.onnx", folder / f"{stem}.json")

    def current(self) -> dict[str, Any] | None:
        """The sidecar of a complete, fresh export; None when missing or stale."""
        try:
            meta: dict[str, Any] = json.loads(self.sidecar.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("key") != self.key or not self.onnx.is_file():
            return None
        path = meta["weights"]["path"]
        try:
            if path is not None and file_stat(Path(path)) != meta["weights_stat"]:
                return None
        except OSError:  # the weights file is gone: export again (which names what is missing)
            return None
        for folder in meta["extra"].get("required_files", []):
            if not Path(folder).exists():
                return None
        return meta


@contextlib.contextmanager
def _export_lock(plan: ExportPlan) -> Iterator[None]:
    with open(plan.onnx.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_export(
    settings: ServiceSettings, builder: str, setting_names: tuple[str, ...], threads: int
) -> tuple[Path, dict[str, Any]]:
    """The ONNX file and sidecar for these settings, exported by the child process when missing or
    stale. ``builder`` is ``module:function`` (see :class:`.onnx_export.TowerExport`)."""
    plan = ExportPlan.of(settings, builder, setting_names)
    meta = plan.current()
    if meta is not None:
        log.info("%s: image model from %s", settings.service_name, plan.onnx)
        return plan.onnx, meta
    try:
        plan.onnx.parent.mkdir(parents=True, exist_ok=True)
        with _export_lock(plan):
            meta = plan.current()  # another process may have exported it meanwhile
            if meta is None:
                _run_export_child(settings, builder, plan, threads)
                meta = plan.current()
    except OSError as exc:
        raise StartupError(
            f"{settings.service_name}: runtime 'onnx' keeps its export in {plan.onnx.parent}, which "
            f"cannot be written ({exc}); point AMBIENCE_MODELS_DIR at a writable folder, or set "
            f"{settings.env_prefix()}RUNTIME=eager"
        ) from exc
    if meta is None:
        raise StartupError(f"{settings.service_name}: the ONNX export left no usable {plan.sidecar}")
    return plan.onnx, meta


def _run_export_child(settings: ServiceSettings, builder: str, plan: ExportPlan, threads: int) -> None:
    service = settings.service_name
    request = {
        "builder": builder,
        "settings_class": f"{type(settings).__module__}:{type(settings).__qualname__}",
        "settings": settings.model_dump(mode="json"),
        "onnx": str(plan.onnx),
        "sidecar": str(plan.sidecar),
        "opset": OPSET,
        "threads": threads,
        "key": plan.key,
        "key_fields": plan.fields,
    }
    env = dict(os.environ)
    if threads:  # the child's CPU threads follow the service's thread setting
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log.info("%s: exporting the image model to %s (a child process; once per model)", service, plan.onnx)
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="ambience-export-") as fh:
        json.dump(request, fh)
        fh.flush()
        child = subprocess.Popen(
            # -S as the service itself ran (a container-like site on PYTHONPATH only)
            [sys.executable, *(["-S"] if sys.flags.no_site else []), "-m", EXPORT_MODULE, fh.name],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stderr is not None
        error = ""
        tail: list[str] = []
        for line in child.stderr:
            line = line.rstrip()
            if line.startswith(ERROR_MARK):
                error = line[len(ERROR_MARK) :]
            elif line:
                tail = [*tail[-9:], line]
                log.info("%s: onnx export: %s", service, line)
        code = child.wait()
    if code == 2:
        raise WeightsMissingError(error)
    if code != 0:
        cause = error or " | ".join(tail[-3:]) or f"exit code {code}"
        raise StartupError(
            f"{service}: runtime 'onnx': exporting the image model failed: {cause}; "
            f"set {settings.env_prefix()}RUNTIME=eager to run it in PyTorch"
        )


class OnnxImageSession:
    """An image embedding session on an exported tower (implements ImageEmbeddingSession; no torch)."""

    runtime = "onnx"
    device = "cpu"

    def __init__(self, settings: ServiceSettings, builder: str, setting_names: tuple[str, ...], threads: int):
        try:
            import onnxruntime
        except ImportError as exc:
            raise StartupError(
                f"{settings.service_name}: runtime 'onnx' needs the onnxruntime package (pip install "
                f"onnxruntime onnx, or the service's extra); or set {settings.env_prefix()}RUNTIME=eager"
            ) from exc
        path, meta = ensure_export(settings, builder, setting_names, threads)
        self.meta = meta
        self.model_id: str = meta["model_id"]
        self.dim = int(meta["dim"])
        w = meta["weights"]
        self.weights = ResolvedWeights(
            w["kind"], Path(w["path"]) if w["path"] else None, w["digest"], w["source"]
        )
        self.plan = PreprocessPlan.from_dict(meta["preprocess"])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Prepacking keeps a second, re-laid-out copy of the MatMul weights: 200 MB more for
        # SigLIP 2 B/32's image tower, for 3% of its speed (none for EfficientNet-Lite0), measured here.
        options.add_session_config_entry("session.disable_prepacking", "1")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        height, width = meta["input_size"]
        self.embed_images(np.zeros((1, height, width, 3), np.uint8))  # warm-up at start-up

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.plan.pixels(image.convert("RGB"))

    def embed_images(self, pixels: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {"pixels": self.plan.normalise(pixels)})[0]
        out = out.reshape(out.shape[0], -1).astype(np.float32, copy=False)
        norms = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)  # as torch's normalize
        return out / norms

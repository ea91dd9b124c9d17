"""The ONNX export child process: ``python -m services.common.models.onnx_export REQUEST.json``.

It is the only process of a service under runtime ``onnx`` that imports torch (see
:mod:`.onnx_tower`, which starts it). The request names a builder (``module:function``) that takes
the service's settings and builds the image tower exactly as the eager runtime loads it, returning a
:class:`TowerExport`; this process exports the tower with ``torch.onnx.export`` (dynamic batch size),
checks ONNX Runtime's outputs against PyTorch's on a random batch, then writes the ``.onnx`` file and
its JSON sidecar (preprocessing plan, output width, the resolved weights, what the builder adds),
each through a temporary file and a rename, the sidecar last: a sidecar on disk means a whole export.

Errors end the process with exit code 2 (weights missing: the service exits 2 as well) or 3 (any
other failure), the message on the last stderr line after ``EXPORT_ERROR``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.errors import WeightsMissingError
from services.common.models.preprocess import describe_transform
from services.common.models.weights import ResolvedWeights

log = logging.getLogger("ambience.onnx_export")
ERROR_MARK = "EXPORT_ERROR "
#: Outputs of ONNX Runtime may differ from PyTorch's by this much (relative to the largest output).
TOLERANCE = 1e-3


@dataclass
class TowerExport:
    """What a builder returns: the image tower (eval mode, float32 pixels in), its eval transform,
    the weights it was loaded with, the model id the store records, anything else the serving side
    needs (JSON values)."""

    module: Any
    transform: Any
    weights: ResolvedWeights
    model_id: str
    input_size: tuple[int, int]
    extra: dict[str, Any] = field(default_factory=dict)


def load_object(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def export(request: dict[str, Any]) -> None:
    import numpy as np
    import onnxruntime
    import torch

    threads = int(request["threads"])
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    settings_class = load_object(request["settings_class"])
    settings = settings_class(**request["settings"])
    log.info("building the image model (%s)", request["builder"])
    built: TowerExport = load_object(request["builder"])(settings)
    plan = describe_transform(built.transform)
    module = built.module.eval()
    height, width = built.input_size
    example = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    onnx_path = Path(request["onnx"])
    tmp = onnx_path.with_name(f".{onnx_path.name}.{os.getpid()}.tmp")
    log.info("exporting %s to ONNX (opset %d, input %dx%d)", built.model_id, request["opset"], height, width)
    # The exporter traces the module outside inference mode, and without the fused attention
    # kernel nn.MultiheadAttention uses in eval mode (it has no ONNX form).
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad():
        expected = module(example)
        if isinstance(expected, tuple | list):
            raise ValueError(f"{built.model_id}: the image tower returns {len(expected)} outputs, not one")
        torch.onnx.export(
            module,
            (example,),
            str(tmp),
            input_names=["pixels"],
            output_names=["out0"],
            dynamic_axes={"pixels": {0: "batch"}, "out0": {0: "batch"}},
            opset_version=int(request["opset"]),
            dynamo=False,
        )
    log.info("checking ONNX Runtime's outputs against PyTorch's")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"pixels": example.numpy()})[0]
    want = expected.float().numpy()
    scale = float(np.abs(want).max()) or 1.0
    diff = float(np.abs(got - want).max()) / scale
    if got.shape != want.shape or not diff <= TOLERANCE:
        raise ValueError(f"ONNX Runtime's outputs differ from PyTorch's (relative {diff:.2g})")
    os.replace(tmp, onnx_path)
    meta = {
        "key": request["key"],
        "key_fields": request["key_fields"],
        "model_id": built.model_id,
        "input_size": [height, width],
        "dim": int(want.reshape(want.shape[0], -1).shape[1]),
        "preprocess": plan.to_dict(),
        "weights": {
            "kind": built.weights.kind,
            "path": str(built.weights.path) if built.weights.path else None,
            "digest": built.weights.digest,
            "source": built.weights.source,
        },
        "weights_stat": file_stat(built.weights.path),
        "extra": built.extra,
        "max_relative_difference": diff,
        "export_seconds": round(time.perf_counter() - started, 1),
    }
    write_atomic(Path(request["sidecar"]), json.dumps(meta, indent=1).encode())
    log.info(
        "wrote %s (%.1f MB) in %.0f s", onnx_path, onnx_path.stat().st_size / 1e6, meta["export_seconds"]
    )


def file_stat(path: Path | None) -> list[int] | None:
    """(size, mtime_ns) of a weights file: a changed file means a stale export."""
    if path is None:
        return None
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns]


def main(argv: list[str]) -> int:
    # The parent logs every line: this module's progress, and other libraries' warnings only.
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter's notice
    request = json.loads(Path(argv[0]).read_text())
    try:
        export(request)
    except WeightsMissingError as exc:
        print(f"{ERROR_MARK}{exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # the exporter raises many kinds; the message names the cause
        print(f"{ERROR_MARK}{type(exc).__name__}: {str(exc)[-600:]}".replace("\n", " "), file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

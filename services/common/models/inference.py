"""How a model service runs its image tower: one mechanism for every model service.

A model service's image forward pass (global_features' timm model, image_text's CLIP image tower,
the tagger's ResNet50, the captioner's CoCa image encoder) goes through :func:`build_image_tower`,
which wraps the loaded module in one of these runtimes (setting ``AMBIENCE_<SERVICE>_RUNTIME``):

- ``eager``: PyTorch as loaded, float32 (the reference every other runtime is measured against);
- ``channels_last``: the module's weights and inputs in NHWC memory order (oneDNN's preferred
  layout for convolutions), float32;
- ``onnx``: exported once at start-up (``torch.onnx.export``) and run by ONNX Runtime's CPU
  provider with the torch thread count, float32 (global_features and image_text do not come here:
  they serve a cached export without torch, :mod:`.onnx_tower`);
- ``bf16``: ``torch.autocast`` to bfloat16 (CPUs with native bf16 only: AVX512-BF16 or AMX);
- ``int8``: dynamic int8 quantisation of the Linear layers (``quantize_dynamic``).

``torch.compile`` is not offered: on the 2-core machine this was measured on, inductor did not
finish compiling even a small ResNet18 within pytest's 10 minutes, so it could be neither measured
nor tested.

``auto`` (the default) is the runtime measured fastest for that service on CPU among those whose
results stay equal to eager's (``cpu_runtime`` of the service's settings class, see docs/models.md),
and ``eager`` on CUDA. A tower takes float32 pixels (N, 3, H, W) on the service's device and returns
what the module returns (a tensor or a tuple of tensors), in float32.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from services.common.errors import StartupError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

RuntimeName = Literal["auto", "eager", "channels_last", "onnx", "bf16", "int8"]
RUNTIMES: tuple[str, ...] = ("eager", "channels_last", "onnx", "bf16", "int8")
#: Runtimes that only run on the CPU.
CPU_ONLY = frozenset({"onnx", "int8"})
#: Runtimes that compute in lower precision: a service may default to one only when its results
#: (retrieval rankings, captions) were shown to stay the same.
LOWER_PRECISION = frozenset({"bf16", "int8"})


def runtime_field(cpu_choice: str = "eager") -> Any:
    """The ``runtime`` setting of a service whose ``auto`` means ``cpu_choice`` on CPU."""
    return Field(
        "auto",
        description=f"How the image model runs: auto ({cpu_choice} on CPU, measured fastest for this "
        "service; eager on CUDA), eager (PyTorch float32), channels_last, onnx "
        "(ONNX Runtime), bf16 (autocast, CPUs with native bf16), int8 (dynamic int8 quantisation)",
    )


def resolve_runtime(setting: str, cpu_choice: str, device: torch.device | str) -> str:
    """The runtime a service uses: ``setting`` unless it is ``auto`` (then ``cpu_choice`` on CPU,
    ``eager`` elsewhere). ``device`` may be a device kind (``cpu``, ``cuda``), so that a service can
    decide without importing torch."""
    kind = device if isinstance(device, str) else device.type
    if setting == "auto":
        return cpu_choice if kind == "cpu" else "eager"
    if setting not in RUNTIMES:
        raise StartupError(f"unknown runtime {setting!r} (known: auto, {', '.join(RUNTIMES)})")
    if setting in CPU_ONLY and kind != "cpu":
        raise StartupError(f"runtime {setting!r} runs on the CPU only, the device is {device}")
    return setting


def cpu_has_native_bf16() -> bool:
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _as_float(out: Any) -> Any:
    if isinstance(out, tuple | list):
        return tuple(_as_float(o) for o in out)
    return out.float()


class ImageTower:
    """A module's forward pass under one runtime (call it with float32 pixels, N x 3 x H x W)."""

    def __init__(self, runtime: str, forward: Callable[[torch.Tensor], Any]) -> None:
        self.runtime = runtime
        self._forward = forward

    def __call__(self, pixels: torch.Tensor) -> Any:
        import torch

        with torch.inference_mode():
            return _as_float(self._forward(pixels))


def build_image_tower(module: torch.nn.Module, runtime: str, example: torch.Tensor) -> ImageTower:
    """Wrap ``module`` (in eval mode, on its device) in ``runtime``; ``example`` is one input batch
    of the shape the service sends (the batch size may vary later). The module may be changed in
    place (memory layout, quantised layers); it is run once on ``example`` before this returns
    (ONNX export and kernel warm-up happen at start-up, not on the first request)."""
    import torch

    module.eval()
    if runtime == "eager":
        tower = ImageTower(runtime, module)
    elif runtime == "channels_last":
        module.to(memory_format=torch.channels_last)
        tower = ImageTower(runtime, lambda x: module(x.contiguous(memory_format=torch.channels_last)))
    elif runtime == "bf16":
        if example.device.type == "cpu" and not cpu_has_native_bf16():
            raise StartupError("runtime 'bf16' needs a CPU with native bfloat16 (AVX512-BF16 or AMX)")
        device_type = example.device.type

        def autocast(x: torch.Tensor) -> Any:
            with torch.autocast(device_type, dtype=torch.bfloat16):
                return module(x)

        tower = ImageTower(runtime, autocast)
    elif runtime == "int8":
        from torch.ao.quantization import quantize_dynamic

        quantised = quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        tower = ImageTower(runtime, quantised)
    elif runtime == "onnx":
        tower = ImageTower(runtime, _onnx_forward(module, example))
    else:
        raise StartupError(f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
    try:
        tower(example)
    except Exception as exc:  # e.g. int8: a model that calls its Linear weights directly (timm's BEiT)
        raise StartupError(
            f"runtime {runtime!r} cannot run {type(module).__name__}: {exc}; set the service's RUNTIME "
            "setting to eager"
        ) from exc
    return tower


def _onnx_forward(module: torch.nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], Any]:
    """Export ``module`` to ONNX (dynamic batch size) and return a forward that runs ONNX Runtime."""
    import torch

    try:
        import onnx  # noqa: F401  (torch.onnx.export writes the model through it)
        import onnxruntime
    except ImportError as exc:
        raise StartupError(
            f"runtime 'onnx' needs the {exc.name} package (pip install onnx onnxruntime, or the "
            "service's extra); or set the service's RUNTIME setting to eager"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="ambience-onnx-") as tmp:
        path = Path(tmp) / "tower.onnx"
        # The exporter traces the module: outside inference mode, and without the fused attention
        # kernel nn.MultiheadAttention uses in eval mode (it has no ONNX form).
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with torch.inference_mode(False), torch.no_grad():
                out = module(example)
                names = [f"out{i}" for i in range(len(out))] if isinstance(out, tuple | list) else ["out0"]
                torch.onnx.export(
                    module,
                    (example,),
                    str(path),
                    input_names=["pixels"],
                    output_names=names,
                    dynamic_axes={name: {0: "batch"} for name in ["pixels", *names]},
                    opset_version=17,
                    dynamo=False,
                )
        except Exception as exc:  # the exporter raises many kinds; the message names the operator
            raise StartupError(
                f"runtime 'onnx': cannot export {type(module).__name__}: {str(exc)[-300:]}; "
                "set the runtime to eager"
            ) from exc
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    single = len(names) == 1

    def forward(x: torch.Tensor) -> Any:
        outputs = session.run(names, {"pixels": x.detach().cpu().numpy()})
        tensors = tuple(torch.from_numpy(o) for o in outputs)
        return tensors[0] if single else tensors

    return forward

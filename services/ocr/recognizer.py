"""Text lines of a picture with rapidocr-onnxruntime (PP-OCRv4 ONNX models shipped in the package).

What a picture costs is decided here, since most photos hold no text:

- **Detection at a bounded size**: the detector sees the picture with its long side scaled down to
  ``det_side`` (never enlarged). rapidocr's own default enlarges every picture until its *short*
  side is 736 px, so a 300x225 snapshot was searched for text at 981x736, 11 times its pixels.
- **Recognition only of what detection found**, on crops of the picture at up to ``max_side``
  (small letters keep their detail); a picture without text costs one detector pass. The angle
  classifier (is a line upside down?) runs only when ``angle_classifier`` is on.
- **Bounded memory**: ONNX Runtime's CPU arena and its memory patterns are off (both keep buffers
  per input shape, and every picture and text line has a shape of its own), and the freed heap is
  handed back after each picture (``malloc_trim``, about 5 ms): glibc otherwise kept the pages of
  every size it had seen, and the service grew from 200 MB to 840 MB over 200 pictures.
"""

from __future__ import annotations

import importlib.metadata
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from services.common.models.memory import trim_heap


@dataclass(frozen=True)
class TextLine:
    text: str
    #: Four corners (x, y) in the pixel coordinates of the uploaded image, clockwise from top-left.
    box: list[list[float]]
    confidence: float

    def scaled(self, sx: float, sy: float) -> TextLine:
        """The line with its box in an image ``sx`` x ``sy`` times as large."""
        return TextLine(
            self.text, [[round(x * sx, 1), round(y * sy, 1)] for x, y in self.box], self.confidence
        )

    def as_dict(self) -> dict[str, object]:
        return {"text": self.text, "box": self.box, "confidence": self.confidence}


def bounded_session(session: Any, threads: int) -> Any:
    """A new ONNX Runtime session of ``session``'s model file with memory that does not grow per
    input shape (no CPU arena, no memory patterns) and ``threads`` threads (0 = ORT's default)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(session._model_path, options, providers=["CPUExecutionProvider"])


class Recognizer:
    """rapidocr's detection (+ optional angle classification) + recognition pipeline.

    One recognition at a time per process: rapidocr keeps per-call state on the engine, and with one
    thread per service (the default) concurrent requests would only compete for the same cores.
    """

    def __init__(
        self,
        *,
        max_side: int = 2000,
        det_side: int = 960,
        min_confidence: float = 0.5,
        threads: int = 1,
        angle_classifier: bool = False,
    ) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.min_confidence = min_confidence
        self.engine = RapidOCR(
            max_side_len=max_side,
            text_score=min_confidence,
            use_cls=angle_classifier,
            det_limit_type="max",
            det_limit_side_len=det_side,
            intra_op_num_threads=threads if threads > 0 else -1,
            print_verbose=False,
        )
        # rapidocr builds its sessions with memory patterns on (and no way to say otherwise): rebuilt.
        holders = [self.engine.text_det.infer, self.engine.text_rec.session]
        if angle_classifier:
            holders.append(self.engine.text_cls.infer)
        else:
            self.engine.text_cls = None  # never used; its session's memory is released
        for holder in holders:
            holder.session = bounded_session(holder.session, threads)
        self._lock = threading.Lock()
        version = importlib.metadata.version("rapidocr-onnxruntime")
        cls = ",ppocr-mobile-v2-cls" if angle_classifier else ""
        self.model_id = f"rapidocr-onnxruntime-{version}/PP-OCRv4-det+rec{cls}"

    def read(self, image: Image.Image) -> list[TextLine]:
        """Text lines, top to bottom, with confidence >= min_confidence."""
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        with self._lock:
            result, _ = self.engine(bgr)
            trim_heap()
        lines = []
        for box, text, score in result or []:
            text = " ".join(str(text).split())
            if text and float(score) >= self.min_confidence:
                corners = [[round(float(x), 1), round(float(y), 1)] for x, y in box]
                lines.append(TextLine(text, corners, round(float(score), 4)))
        # Reading order: by the top edge, then left to right.
        lines.sort(key=lambda line: (min(y for _, y in line.box), min(x for x, _ in line.box)))
        return lines

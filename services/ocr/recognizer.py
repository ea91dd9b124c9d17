"""Text lines of a picture with rapidocr-onnxruntime (PP-OCRv4 ONNX models shipped in the package)."""

from __future__ import annotations

import importlib.metadata
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image


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


class Recognizer:
    """rapidocr's detection + angle classification + recognition pipeline.

    One recognition at a time per process: onnxruntime already spreads one image over all cores,
    and rapidocr keeps per-call state on the engine.
    """

    def __init__(self, *, max_side: int = 2000, min_confidence: float = 0.5, threads: int = 0) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.min_confidence = min_confidence
        self.engine = RapidOCR(
            max_side_len=max_side,
            text_score=min_confidence,
            intra_op_num_threads=threads if threads > 0 else -1,
            print_verbose=False,
        )
        self._lock = threading.Lock()
        version = importlib.metadata.version("rapidocr-onnxruntime")
        self.model_id = f"rapidocr-onnxruntime-{version}/PP-OCRv4-det+rec,ppocr-mobile-v2-cls"

    def read(self, image: Image.Image) -> list[TextLine]:
        """Text lines, top to bottom, with confidence >= min_confidence."""
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        with self._lock:
            result, _ = self.engine(bgr)
        lines = []
        for box, text, score in result or []:
            text = " ".join(str(text).split())
            if text and float(score) >= self.min_confidence:
                corners = [[round(float(x), 1), round(float(y), 1)] for x, y in box]
                lines.append(TextLine(text, corners, round(float(score), 4)))
        # Reading order: by the top edge, then left to right.
        lines.sort(key=lambda line: (min(y for _, y in line.box), min(x for x, _ in line.box)))
        return lines

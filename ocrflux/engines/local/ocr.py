"""The recogniser: rapidocr (ONNX Runtime) with the models its wheel ships, never downloaded.

rapidocr fetches any model file it does not find next to itself. Here every model is resolved
to a file inside the installed wheel before rapidocr sees the configuration, and handed over
as an explicit path, so rapidocr's download code is never reached; a model the wheel does not
ship is refused with `ModelNotShipped`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rapidocr
from rapidocr import RapidOCR
from rapidocr.inference_engine.base import FileInfo, InferSession
from rapidocr.utils.typings import EngineType, ModelType, OCRVersion, TaskType

from ocrflux.engines.local.errors import ModelNotShipped
from ocrflux.engines.local.geometry import Box, Quad, TextLine, Word, split_into_words

MODEL_DIR = Path(rapidocr.__file__).resolve().parent / "models"

# The direction classifier exists in one version only; detection and recognition follow the
# caller's choice. These defaults are the models rapidocr 3.10 ships.
_CLS = ("PP-OCRv4", "mobile", "ch")
DEFAULT_VERSION = "PP-OCRv6"
DEFAULT_MODEL_TYPE = "small"
DEFAULT_LANG = "ch"  # PP-OCRv6's recogniser reads Chinese, English and ~50 more languages


def shipped_models() -> list[str]:
    """File names of the models inside the installed rapidocr wheel."""
    return sorted(p.name for p in MODEL_DIR.glob("*.onnx"))


def model_path(task: str, ocr_version: str, model_type: str, lang: str) -> Path:
    """The shipped file rapidocr would use for this model, or ModelNotShipped."""
    wanted = f"{task} model {ocr_version}/{model_type}/{lang}"
    try:
        info = InferSession.get_model_url(
            FileInfo(
                EngineType.ONNXRUNTIME,
                OCRVersion(ocr_version),
                TaskType(task),
                lang,
                ModelType(model_type),
            )
        )
    except ValueError as exc:
        raise ModelNotShipped(f"rapidocr has no {wanted}: {exc}") from None
    path = MODEL_DIR / Path(str(info["model_dir"])).name
    if not path.is_file():
        raise ModelNotShipped(
            f"the {wanted} ({path.name}) is not shipped with the installed rapidocr and is never "
            f"downloaded at run time; shipped: {', '.join(shipped_models())}"
        )
    return path


class Recogniser:
    """Detects and reads the text lines of a page image (one instance per process)."""

    def __init__(
        self,
        threads: int = 1,
        *,
        ocr_version: str = DEFAULT_VERSION,
        model_type: str = DEFAULT_MODEL_TYPE,
        lang: str = DEFAULT_LANG,
    ) -> None:
        # rapidocr logs through its own logger; its "no text found" warning is not news here.
        logging.getLogger("RapidOCR").setLevel(logging.CRITICAL)
        if threads < 1:
            raise ValueError("threads must be >= 1")
        params: dict[str, Any] = {
            "Global.log_level": "critical",
            "Global.return_word_box": True,
            # No per-line direction classifier: on long lines of small print (a PDF page at
            # 1024 px) it calls upright text upside down and the line is read turned, as
            # noise. Pages reach the engine upright (EXIF applied, skew levelled).
            "Global.use_cls": False,
            "Det.model_path": str(model_path("det", ocr_version, model_type, lang)),
            "Cls.model_path": str(model_path("cls", *_CLS)),
            "Rec.model_path": str(model_path("rec", ocr_version, model_type, lang)),
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        self.threads = threads
        self._engine = RapidOCR(params=params)
        self._load_models()

    def _load_models(self) -> None:
        # rapidocr loads each model on first use; loading now puts the cost (and any missing
        # file) at start-up instead of on the first page.
        for name in ("_load_det_model", "_load_rec_model"):
            load = getattr(self._engine, name, None)
            if load is not None:
                load()

    def read(self, image: np.ndarray) -> list[TextLine]:
        """The text lines of a grayscale (H, W) or BGR (H, W, 3) uint8 image, top to bottom."""
        out: Any = self._engine(image)
        texts: Sequence[str] | None = getattr(out, "txts", None)
        quads = getattr(out, "boxes", None)
        if not texts or quads is None:
            return []
        scores: Sequence[float] = out.scores
        word_results: Sequence[Any] = getattr(out, "word_results", ())
        # rapidocr drops lines without word boxes from word_results, which shifts the rest:
        # only trust them when there is one entry per line.
        aligned = len(word_results) == len(texts)
        lines = []
        for i, text in enumerate(texts):
            quad = _quad(quads[i])
            box = Box.around(quad)
            pieces = _pieces(word_results[i]) if aligned else []
            words = (
                split_into_words(text, pieces, box) if pieces else (Word(text.strip(), box, False),)
            )
            lines.append(TextLine(text.strip(), quad, float(scores[i]), words))
        return lines


def _quad(points: Any) -> Quad:
    p = [(float(x), float(y)) for x, y in np.asarray(points).reshape(4, 2)]
    return (p[0], p[1], p[2], p[3])


def _pieces(words: Any) -> list[tuple[str, Box]]:
    pieces = []
    for item in words or ():
        text, _score, points = item
        if points is None:
            return []
        pieces.append((str(text), Box.around(_quad(points))))
    return pieces

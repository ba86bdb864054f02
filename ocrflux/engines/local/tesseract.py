"""Tesseract for the scripts the embedded recogniser cannot read (optional, from Debian).

The recogniser in rapidocr's wheel reads Latin and Chinese script only: a Korean page comes
back as Chinese-looking junk and an Arabic one as nothing. When a page looks like that, the
worker asks Tesseract's orientation and script detection (`--psm 0`) which script the page is
in and, when the language pack for it is installed (Debian's `tesseract-ocr-kor`, `-ara`, ...),
reads the page with Tesseract instead. The binary runs as a subprocess of the worker process,
so the event loop never waits on it; nothing here is imported by the gateway.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

import cv2
import numpy as np

from ocrflux.engines.local.errors import LocalOCRError
from ocrflux.engines.local.geometry import Box, TextLine, Word

# Tesseract's OSD script names -> the language pack that reads them (Debian package
# tesseract-ocr-<pack>). Latin and Han are what the embedded recogniser reads itself.
SCRIPT_PACKS = {
    "Korean": "kor",
    "Hangul": "kor",
    "Arabic": "ara",
    "Japanese": "jpn",
    "Cyrillic": "rus",
    "Greek": "ell",
    "Hebrew": "heb",
    "Devanagari": "hin",
    "Thai": "tha",
    "Armenian": "hye",
    "Georgian": "kat",
    "Bengali": "ben",
    "Tamil": "tam",
}
RECOGNISER_SCRIPTS = frozenset({"Latin", "Han"})
_TIMEOUT = 60.0  # seconds for one Tesseract run on one page
_SCRIPT = re.compile(r"^Script:\s*(\S+)", re.MULTILINE)


class TesseractFailed(LocalOCRError):
    """The Tesseract binary failed or timed out on a page."""


@dataclass(frozen=True, slots=True)
class Tesseract:
    """The installed `tesseract` binary and its language packs."""

    binary: str
    languages: frozenset[str]

    @classmethod
    def find(cls, binary: str = "tesseract") -> Tesseract | None:
        """The installed Tesseract, or None when there is no binary (or it does not run)."""
        path = shutil.which(binary)
        if path is None:
            return None
        try:
            listed = subprocess.run(
                [path, "--list-langs"], capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        lines = listed.stdout.splitlines()[1:]  # the first line names the tessdata folder
        return cls(path, frozenset(line.strip() for line in lines if line.strip()))

    def _run(self, gray: np.ndarray, *args: str) -> str:
        ok, png = cv2.imencode(".png", gray)
        if not ok:  # pragma: no cover - encoding a uint8 array does not fail
            raise TesseractFailed("could not encode the page for Tesseract")
        try:
            done = subprocess.run(
                [self.binary, "stdin", "stdout", *args],
                input=png.tobytes(),
                capture_output=True,
                timeout=_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TesseractFailed(f"Tesseract took more than {_TIMEOUT:.0f} s") from None
        except OSError as exc:
            raise TesseractFailed(f"Tesseract could not run: {exc}") from None
        out = done.stdout.decode("utf-8", "replace")
        if done.returncode != 0 and not out:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
            raise TesseractFailed(f"Tesseract failed: {' '.join(message) or done.returncode}")
        return out

    def script(self, gray: np.ndarray) -> str | None:
        """The page's script as Tesseract's OSD names it, or None when it cannot tell."""
        if "osd" not in self.languages:
            return None
        try:
            found = self._run(gray, "--psm", "0")
        except TesseractFailed:  # "Too few characters": OSD exits with an error
            return None
        match = _SCRIPT.search(found)
        # Its confidence is no guide: docling's Korean report scores 0.04 to 0.40 per page.
        return match[1] if match is not None else None

    def confidence(self, gray: np.ndarray, pack: str) -> float:
        """Tesseract's mean word confidence (0-1) reading the page with one language pack."""
        tsv = self._run(gray, "-l", pack, "--psm", "3", "tsv")
        scores = [
            float(cells[10])
            for cells in (row.split("\t") for row in tsv.splitlines()[1:])
            if len(cells) == 12 and cells[0] == "5" and cells[11].strip()
        ]
        return sum(scores) / (100.0 * len(scores)) if scores else 0.0

    def read(self, gray: np.ndarray, pack: str) -> str:
        """The page's text read with one language pack: paragraphs split by blank lines."""
        text = self._run(gray, "-l", pack, "--psm", "3")
        paragraphs = re.split(r"\n\s*\n", text.replace("\f", ""))
        return "\n\n".join(p.strip() for p in paragraphs if p.strip())


_PAD = 0.15  # Tesseract's line boxes hug the glyphs; the detector's have this margin per side


class TesseractLines:
    """Tesseract as the line recogniser (`LOCAL_RECOGNISER=tesseract`): its TSV words become
    the same `TextLine`s rapidocr gives, so the layout steps are shared."""

    def __init__(self, tesseract: Tesseract, pack: str = "eng") -> None:
        if pack not in tesseract.languages:
            raise TesseractFailed(f"Tesseract has no {pack!r} language pack")
        self.tesseract = tesseract
        self.pack = pack

    def read(self, image: np.ndarray) -> list[TextLine]:
        """The text lines of a grayscale page, in Tesseract's order."""
        tsv = self.tesseract._run(image, "-l", self.pack, "--psm", "3", "tsv")
        grouped: dict[tuple[str, ...], list[tuple[str, Box, float]]] = {}
        for row in tsv.splitlines()[1:]:
            cells = row.split("\t")
            if len(cells) != 12 or cells[0] != "5" or not cells[11].strip():
                continue
            left, top, width, height = (float(v) for v in cells[6:10])
            box = Box(left, top, left + width, top + height)
            grouped.setdefault(tuple(cells[1:5]), []).append(
                (cells[11].strip(), box, float(cells[10]))
            )
        lines = []
        for words in grouped.values():
            line_box = Box.union(b for _, b, _ in words)
            pad = _PAD * line_box.height
            y0, y1 = line_box.y0 - pad, line_box.y1 + pad
            placed = tuple(
                Word(text, Box(b.x0, y0, b.x1, y1), k > 0) for k, (text, b, _) in enumerate(words)
            )
            quad = ((line_box.x0, y0), (line_box.x1, y0), (line_box.x1, y1), (line_box.x0, y1))
            score = sum(max(0.0, c) for _, _, c in words) / (100.0 * len(words))
            lines.append(TextLine(" ".join(w.text for w in placed), quad, score, placed))
        return lines

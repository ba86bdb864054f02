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
_MIN_SCRIPT_CONFIDENCE = 0.1


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
        found = self._run(gray, "--psm", "0")
        match = _SCRIPT.search(found)
        confidence = re.search(r"^Script confidence:\s*([\d.]+)", found, re.MULTILINE)
        if match is None or (confidence and float(confidence[1]) < _MIN_SCRIPT_CONFIDENCE):
            return None
        return match[1]

    def read(self, gray: np.ndarray, pack: str) -> str:
        """The page's text read with one language pack: paragraphs split by blank lines."""
        text = self._run(gray, "-l", pack, "--psm", "3")
        paragraphs = re.split(r"\n\s*\n", text.replace("\f", ""))
        return "\n\n".join(p.strip() for p in paragraphs if p.strip())

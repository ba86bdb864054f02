"""Pages the embedded recogniser cannot read: noticed from the ink, read by Tesseract or refused.

The recogniser reads Latin and Chinese. On a page in another script its detector keeps few
lines (or none): most glyph-sized marks of ink then lie outside every recognised line. Such a
page is shown to Tesseract's script detection, read by Tesseract when the language pack for
that script is installed, and refused with `UnreadableScript` when it is not (the page becomes
a fallback page with that reason), so it never comes back as an empty or junk success.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ocrflux.engines.local.errors import UnreadableScript
from ocrflux.engines.local.geometry import TextLine
from ocrflux.engines.local.tesseract import RECOGNISER_SCRIPTS, SCRIPT_PACKS, Tesseract

_MIN_GLYPHS = 40  # fewer glyph-sized marks than this is not a page of text
_COVERED = 0.5  # share of the glyphs inside recognised lines below which the page is suspect
_MAX_GLYPH = 0.06  # a glyph is at most this share of the page's longer side
# Mean recognition confidence (per character) below which the page is suspect: a recogniser
# that finds every line of another script but reads it as junk is unsure of it (Tesseract's
# English pack on Korean: ~0.4; rapidocr on clean or scanned Latin pages: > 0.9).
_MIN_CONFIDENCE = 0.6
# A pack tried on a page whose script OSD named wrongly must read it at least this confidently,
# and this much more confidently than English does (Korean scan: kor 0.67, eng 0.29, ara 0.24).
_MIN_PACK_CONFIDENCE = 0.55
_PACK_MARGIN = 0.2


def glyph_centres(ink: np.ndarray) -> np.ndarray:
    """(x, y) centres of the connected marks of ink the size of a character."""
    count, _, stats, centres = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if count <= 1:
        return np.zeros((0, 2))
    w, h = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    top = _MAX_GLYPH * max(ink.shape)
    keep = (h >= 4) & (h <= top) & (w <= top) & (w >= 1)
    return np.asarray(centres[1:][keep])


def covered_share(lines: Sequence[TextLine], ink: np.ndarray) -> tuple[int, float]:
    """(glyphs on the page, share of them inside a recognised line's box)."""
    centres = glyph_centres(ink)
    if len(centres) == 0:
        return 0, 1.0
    mask = np.zeros(ink.shape, dtype=np.uint8)
    for line in lines:
        quad = np.asarray(line.quad, dtype=np.int32).reshape(4, 2)
        cv2.fillConvexPoly(mask, quad, 1)
        cv2.polylines(mask, [quad], True, 1, thickness=5)
    xs = np.clip(centres[:, 0].astype(int), 0, ink.shape[1] - 1)
    ys = np.clip(centres[:, 1].astype(int), 0, ink.shape[0] - 1)
    return len(centres), float(mask[ys, xs].mean())


def confidence(lines: Sequence[TextLine]) -> float:
    """The recogniser's mean confidence over the page's characters (1.0 with no text)."""
    chars = sum(len(line.text) for line in lines)
    return sum(line.score * len(line.text) for line in lines) / chars if chars else 1.0


def is_suspect(lines: Sequence[TextLine], ink: np.ndarray) -> bool:
    """True when the page has text marks that the recognised lines mostly miss, or lines the
    recogniser read with little confidence."""
    glyphs, covered = covered_share(lines, ink)
    if glyphs < _MIN_GLYPHS:
        return False
    return covered < _COVERED or confidence(lines) < _MIN_CONFIDENCE


def read_other_script(
    gray: np.ndarray, lines: Sequence[TextLine], tesseract: Tesseract | None
) -> str | None:
    """Tesseract's text of a suspect page, or None to keep the recogniser's reading.

    Raises `UnreadableScript` when the page is in a script nothing installed reads."""
    if tesseract is None:
        if not lines:
            raise UnreadableScript(
                "the page shows text the embedded recogniser (Latin and Chinese script) cannot "
                "read, and Tesseract is not installed to read other scripts"
            )
        return None
    script = tesseract.script(gray)
    if script is None or script in RECOGNISER_SCRIPTS:
        return None
    pack = SCRIPT_PACKS.get(script.split("_", 1)[0])
    if pack is None or pack not in tesseract.languages:
        # OSD misnames scripts on poor scans (docling's Korean report, scanned: "Cyrillic"):
        # the installed packs for other scripts get a try before the page is refused.
        tried = sorted(set(SCRIPT_PACKS.values()) & tesseract.languages)
        scored = [(tesseract.confidence(gray, p), p) for p in tried]
        best = max(scored, default=(0.0, ""))
        latin = tesseract.confidence(gray, "eng") if "eng" in tesseract.languages else 0.0
        if best[0] >= _MIN_PACK_CONFIDENCE and best[0] >= latin + _PACK_MARGIN:
            return tesseract.read(gray, best[1])
        wanted = f" (Debian package tesseract-ocr-{pack})" if pack else ""
        raise UnreadableScript(
            f"the page is in {script} script, which the embedded recogniser (Latin and "
            f"Chinese) cannot read and no installed Tesseract language pack reads{wanted}"
        )
    return tesseract.read(gray, pack)

"""`read_page`: one page image to a `LocalPage`, synchronously (run it off the event loop).

Steps: decode to grayscale, level the page (deskew), find checkboxes and paint them out, read
the text lines, find ruled tables, compose the Markdown. A page whose text the recogniser
mostly misses (another script) goes to Tesseract or is refused (`scripts`).
"""

from __future__ import annotations

import io
import time
from typing import Protocol

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ocrflux.engines.local.checkboxes import erase, find_checkboxes
from ocrflux.engines.local.errors import UnreadableImage
from ocrflux.engines.local.geometry import TextLine
from ocrflux.engines.local.language import count_characters, primary_language
from ocrflux.engines.local.markdown import compose
from ocrflux.engines.local.pixels import deskew_angle, ink_mask, rotate
from ocrflux.engines.local.result import LocalPage
from ocrflux.engines.local.scripts import is_suspect, read_other_script
from ocrflux.engines.local.tables import find_grids
from ocrflux.engines.local.tesseract import Tesseract

# Longer sides are scaled down first: detection runs at <= 2000 px anyway, and the pixel steps
# cost memory and time in proportion to the area.
MAX_SIDE = 2400
_MIN_SKEW = 0.2  # degrees; less is not worth resampling the page for

PageImage = bytes | Image.Image | np.ndarray


class LineReader(Protocol):
    """What reads a page's text lines: rapidocr's `ocr.Recogniser` or `tesseract.TesseractLines`."""

    def read(self, image: np.ndarray) -> list[TextLine]: ...


def _open(data: bytes) -> Image.Image:
    try:
        opened = Image.open(io.BytesIO(data))
        # JPEG decodes straight to a smaller scale when the page is far larger than needed.
        opened.draft("L", (MAX_SIDE, MAX_SIDE))
        opened.load()
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(f"image too large: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnreadableImage(f"not a readable image: {exc}") from None
    return opened


def _to_l(pil: Image.Image) -> Image.Image:
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        # Transparent pixels are paper, not the black their colour channels often hold.
        background = Image.new("RGBA", pil.size, "white")
        return Image.alpha_composite(background, pil.convert("RGBA")).convert("L")
    if pil.mode.startswith("I") or pil.mode == "F":
        # 16-bit and float greys: Pillow's "L" conversion would clip them to white.
        values = np.asarray(pil, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        scale = 255.0 / top if top > 255 else 1.0
        return Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8))
    return pil.convert("L")


def to_gray(image: PageImage) -> np.ndarray:
    """A uint8 grayscale array from PNG/JPEG bytes, a PIL image, or an array (gray or BGR)."""
    if isinstance(image, np.ndarray):
        gray = image if image.ndim == 2 else cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)
        pil = Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8))
    else:
        if isinstance(image, bytes | bytearray):
            image = _open(bytes(image))
        pil = _to_l(ImageOps.exif_transpose(image))
    if max(pil.size) > MAX_SIDE:
        pil.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return np.ascontiguousarray(np.asarray(pil, dtype=np.uint8))


def read_page(
    image: PageImage, recogniser: LineReader, tesseract: Tesseract | None = None
) -> LocalPage:
    """Read one page image into Markdown with the given recogniser; `tesseract` (optional)
    reads the pages in scripts the recogniser cannot read."""
    started = time.perf_counter()
    gray = to_gray(image)
    angle = deskew_angle(gray)
    if abs(angle) >= _MIN_SKEW:
        gray = rotate(gray, angle)
    checkboxes = find_checkboxes(gray)
    lines = recogniser.read(erase(gray, checkboxes))
    ink = ink_mask(gray)
    other = read_other_script(gray, lines, tesseract) if is_suspect(lines, ink) else None
    if other is not None:
        return LocalPage(
            markdown=other,
            characters=count_characters(other),
            lines=sum(1 for line in other.splitlines() if line.strip()),
            primary_language=primary_language(other),
            seconds=time.perf_counter() - started,
        )
    grids = find_grids(gray)
    markdown = compose(lines, checkboxes, grids, ink)
    text = " ".join(line.text for line in lines)
    return LocalPage(
        markdown=markdown,
        characters=count_characters(text),
        lines=len(lines),
        primary_language=primary_language(text),
        seconds=time.perf_counter() - started,
    )

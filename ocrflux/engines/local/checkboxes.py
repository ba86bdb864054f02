"""Checkboxes from pixels: small hollow squares standing apart, ticked or crossed vs empty.

The recogniser drops box glyphs or reads them as a stray letter, so boxes are found before
recognition and painted out of the image it reads; the layout then places a `[√]` / `[ ]` mark
where each box was. A square counts as a checkbox when all four sides are drawn, its outline
nearly fills its (slightly rotated) bounding rectangle, and it stands apart from its neighbours
by at least a third of its side: a CJK character such as 口 is just as square but sits close
to the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ocrflux.engines.local.geometry import Box
from ocrflux.engines.local.pixels import ink_mask

CHECKED = "[√]"
UNCHECKED = "[ ]"

_MIN_SIDE = 8
_SIDE_COVERAGE = 0.9  # share of each side's length that must be inked
_FILL = 0.85  # outline area / minimum-area rectangle
_TICK_INK = 0.05  # share of the inner area inked for the box to count as ticked or crossed
_GAP = 0.3  # clear space needed left and right, as a share of the side
_GAP_INK = 0.03


@dataclass(frozen=True, slots=True)
class Checkbox:
    box: Box
    checked: bool

    @property
    def mark(self) -> str:
        return CHECKED if self.checked else UNCHECKED


def _sides_drawn(roi: np.ndarray, band: int) -> bool:
    sides = (
        roi[:band, :].any(axis=0),
        roi[-band:, :].any(axis=0),
        roi[:, :band].any(axis=1),
        roi[:, -band:].any(axis=1),
    )
    return all(float(side.mean()) >= _SIDE_COVERAGE for side in sides)


def _clear(ink: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> bool:
    """True if the strip has (nearly) no ink; a strip cut off by the page edge is clear."""
    x0, x1 = max(0, x0), min(ink.shape[1], x1)
    if x1 <= x0 or y1 <= y0:
        return True
    return float((ink[y0:y1, x0:x1] > 0).mean()) <= _GAP_INK


def find_checkboxes(gray: np.ndarray) -> list[Checkbox]:
    """Every checkbox on a level grayscale page, top to bottom, left to right."""
    ink = ink_mask(gray)
    h, w = ink.shape
    max_side = max(40, round(0.05 * max(h, w)))
    contours, hierarchy = cv2.findContours(ink, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    found = []
    for i, contour in enumerate(contours):
        if hierarchy[0][i][3] != -1:  # a hole, not the outline of a shape
            continue
        x, y, bw, bh = cv2.boundingRect(contour)
        side = max(bw, bh)
        if not (min(bw, bh) >= _MIN_SIDE and side <= max_side and 0.75 <= bw / bh <= 1.33):
            continue
        (_, _), (rw, rh), _ = cv2.minAreaRect(contour)  # tolerates a slight tilt
        if cv2.contourArea(contour) < _FILL * max(1.0, rw * rh):
            continue
        roi = ink[y : y + bh, x : x + bw] > 0
        if not _sides_drawn(roi, max(2, round(0.18 * side))):
            continue
        gap = max(3, round(_GAP * side))
        inner_y0, inner_y1 = y + 2, y + bh - 2
        if not (
            _clear(ink, inner_y0, inner_y1, x + bw + 1, x + bw + 1 + gap)
            and _clear(ink, inner_y0, inner_y1, x - 1 - gap, x - 1)
        ):
            continue
        inset = max(3, round(0.25 * side))
        inner = roi[inset : bh - inset, inset : bw - inset]
        checked = inner.size > 0 and float(inner.mean()) > _TICK_INK
        found.append(Checkbox(Box(x, y, x + bw, y + bh), checked))
    found.sort(key=lambda c: (c.box.y0, c.box.x0))
    return found


def erase(gray: np.ndarray, boxes: list[Checkbox], pad: int = 2) -> np.ndarray:
    """A copy of the page with the checkboxes painted white (the recogniser would misread them)."""
    if not boxes:
        return gray
    out = gray.copy()
    for c in boxes:
        b = c.box
        out[
            max(0, int(b.y0) - pad) : int(b.y1) + pad, max(0, int(b.x0) - pad) : int(b.x1) + pad
        ] = 255
    return out

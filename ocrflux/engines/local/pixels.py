"""Pixel helpers shared by the layout steps: ink masks, skew estimation, rotation."""

from __future__ import annotations

import cv2
import numpy as np

# A page whose darkest and lightest pixels differ by less than this has no ink (blank paper,
# a uniform scan); Otsu would otherwise split its noise into "ink" and "paper".
_MIN_CONTRAST = 48


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """255 where a grayscale page has ink, 0 on paper (Otsu's threshold)."""
    if gray.size == 0 or int(gray.max()) - int(gray.min()) < _MIN_CONTRAST:
        return np.zeros_like(gray)
    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    return ink


def _profile_sharpness(ink: np.ndarray, angle: float) -> float:
    h, w = ink.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    turned = cv2.warpAffine(ink, matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    profile = turned.sum(axis=1, dtype=np.float64)
    # Text lines rotated level give the most abrupt rows of ink and gaps.
    return float(np.square(np.diff(profile)).sum())


def deskew_angle(gray: np.ndarray, max_degrees: float = 5.0) -> float:
    """Degrees to rotate the page by (counter-clockwise, as `rotate`) so text lines are level.

    Projection profiles of a downscaled ink mask: coarse steps of 0.5 degree, then 0.1."""
    h, w = gray.shape
    scale = min(1.0, 800 / max(h, w))
    small = cv2.resize(
        gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    ink = ink_mask(small)
    if cv2.countNonZero(ink) < 50:
        return 0.0
    coarse = np.arange(-max_degrees, max_degrees + 1e-9, 0.5)
    best = max(coarse, key=lambda a: _profile_sharpness(ink, float(a)))
    fine = np.arange(best - 0.4, best + 0.4 + 1e-9, 0.1)
    return round(float(max(fine, key=lambda a: _profile_sharpness(ink, float(a)))), 2)


def rotate(image: np.ndarray, angle: float) -> np.ndarray:
    """The image rotated counter-clockwise by angle degrees on a white canvas large enough to
    keep every corner."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    matrix[0, 2] += new_w / 2 - w / 2
    matrix[1, 2] += new_h / 2 - h / 2
    white = (255, 255, 255) if image.ndim == 3 else 255
    return cv2.warpAffine(image, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR, borderValue=white)

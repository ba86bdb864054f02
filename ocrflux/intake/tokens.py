"""Token budget: what Qwen2.5-VL (OCRFlux-3B) will charge for images and text, before sending.

Images: Qwen2.5-VL's processor resizes every image with `smart_resize` (both sides to multiples
of 28 = patch 14 x merge 2, pixels within [min_pixels, max_pixels]) and emits one
`<|image_pad|>` token per 28x28 block, wrapped in `<|vision_start|>`/`<|vision_end|>`.
min/max pixels are Qwen2.5-VL's `preprocessor_config.json` values (3136 and 12845056 =
28*28*16384), which OCRFlux-3B inherits; the transformers class default (28*28*1280) differs, so
the config, not the class, decides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ocrflux.intake.images import ImageOptions, ImageRejected, PreparedImage, scaled_size, shrink


class ContextTooSmall(ImageRejected):
    """The images cannot fit the model's context, even shrunk to the readable floor."""


FACTOR = 28
MIN_PIXELS = 56 * 56
MAX_PIXELS = 28 * 28 * 16384
# <|vision_start|> and <|vision_end|> around each image's pad tokens.
IMAGE_WRAPPER_TOKENS = 2


def smart_resize(
    height: int,
    width: int,
    factor: int = FACTOR,
    min_pixels: int = MIN_PIXELS,
    max_pixels: int = MAX_PIXELS,
) -> tuple[int, int]:
    """(height, width) the Qwen2-VL/2.5-VL image processor resizes an image to."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_tokens(width: int, height: int) -> int:
    """Number of `<|image_pad|>` tokens for one image (without the 2 wrapper tokens)."""
    h_bar, w_bar = smart_resize(height, width)
    return (h_bar // FACTOR) * (w_bar // FACTOR)


def estimate_text_tokens(text: str) -> int:
    """A deliberately high estimate for Qwen2's byte-level BPE.

    Digits are split one per token; other ASCII averages ~4 characters per token in prose, counted
    as 3; non-ASCII is counted as one token per 2 UTF-8 bytes (CJK: 1.5 per character, where
    Qwen's vocabulary mostly needs 1).
    """
    if not text:
        return 0
    digits = sum(text.count(d) for d in "0123456789")
    ascii_chars = len(text) if text.isascii() else len(text.encode("ascii", "ignore"))
    non_ascii_bytes = len(text.encode("utf-8")) - ascii_chars
    return math.ceil((ascii_chars - digits) / 3) + digits + math.ceil(non_ascii_bytes / 2)


Resize = Callable[[int, int, int], tuple[int, int]]


def _images_need(
    sizes: Sequence[tuple[int, int]], cap: int = 0, resize: Resize = scaled_size
) -> int:
    # `shrink` leaves an image alone when it is within the cap.
    return sum(
        image_tokens(*(resize(w, h, cap) if 0 < cap < max(w, h) else (w, h))) + IMAGE_WRAPPER_TOKENS
        for w, h in sizes
    )


def plan_max_side(
    sizes: Sequence[tuple[int, int]],
    *,
    text_tokens: int,
    max_tokens: int,
    max_model_len: int,
    min_side: int,
    resize: Resize = scaled_size,
) -> int | None:
    """The largest longest-side cap that makes everything fit; None if it already fits.

    `resize` is how `shrink` sizes an image at the cap (`toolkit_size` for OCRFlux pages).

    Pure arithmetic (cheap: fine on the event loop). The cap applies to every image, so the
    largest shrink first; an image is never shrunk below `min_side` (its longest side), and one
    already smaller is left alone. Raises ContextTooSmall (an ImageRejected, 400) with the numbers
    when even the floor does not fit.
    """
    need = _images_need(sizes)
    budget = max_model_len - text_tokens - max_tokens
    if need <= budget:
        return None
    longest = max(max(w, h) for w, h in sizes)
    floor = min(min_side, longest)
    at_floor = _images_need(sizes, floor, resize)
    if at_floor > budget:
        raise ContextTooSmall(
            f"the images need ~{need:,} tokens, the model's context is {max_model_len:,}: "
            f"the text needs ~{text_tokens:,} and max_tokens is {max_tokens:,}, leaving "
            f"{max(budget, 0):,} for the images, which need ~{at_floor:,} even when shrunk to "
            f"{floor} px (send fewer or smaller images, or lower max_tokens)"
        )
    low, high = floor, longest - 1  # invariant: `low` fits
    while low < high:
        middle = (low + high + 1) // 2
        if _images_need(sizes, middle, resize) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def fit_images_to_context(
    images: Sequence[PreparedImage],
    text_tokens: int,
    max_tokens: int,
    max_model_len: int,
    min_side: int,
    opts: ImageOptions | None = None,
) -> list[PreparedImage]:
    """Shrink images until images + text + max_tokens fit (sync: CPU work, run it off the loop)."""
    cap = plan_max_side(
        [(i.width, i.height) for i in images],
        text_tokens=text_tokens,
        max_tokens=max_tokens,
        max_model_len=max_model_len,
        min_side=min_side,
    )
    if cap is None:
        return list(images)
    return [shrink(image, cap, opts) for image in images]

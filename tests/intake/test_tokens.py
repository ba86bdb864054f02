"""Token budget: Qwen2.5-VL's smart_resize, the text estimate, and fitting images to the context."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from ocrflux.intake.images import ImageOptions, ImageRejected, prepare_bytes, scaled_size
from ocrflux.intake.tokens import (
    IMAGE_WRAPPER_TOKENS,
    estimate_text_tokens,
    fit_images_to_context,
    image_tokens,
    plan_max_side,
    smart_resize,
)


# Worked by hand from smart_resize (factor 28, min 3136, max 12845056 pixels).
@pytest.mark.parametrize(("width", "height", "resized", "tokens"), [
    (256, 256, (252, 252), 81),  # observed on real vLLM (issue 7): 81 image tokens
    (1024, 768, (756, 1036), 999),  # 768/28 = 27.4 -> 27, 1024/28 = 36.6 -> 37
    (1024, 683, (672, 1036), 888),
    (683, 1024, (1036, 672), 888),
    (4000, 3000, (2996, 4004), 15_301),  # a 12 MP photo sent as is
    (6000, 4000, (2912, 4368), 16_224),  # above max_pixels: scaled down by sqrt(24e6 / max)
    (20, 10, (56, 84), 6),  # below min_pixels: scaled up
])  # fmt: skip
def test_smart_resize_and_image_tokens(
    width: int, height: int, resized: tuple[int, int], tokens: int
) -> None:
    assert smart_resize(height, width) == resized
    assert image_tokens(width, height) == tokens


@given(st.integers(28, 3000), st.integers(28, 3000))
def test_smart_resize_invariants(width: int, height: int) -> None:
    h_bar, w_bar = smart_resize(height, width)
    assert h_bar % 28 == 0 and w_bar % 28 == 0
    assert 56 * 56 <= h_bar * w_bar <= 28 * 28 * 16384


def test_text_estimate_is_generous() -> None:
    assert estimate_text_tokens("") == 0
    # Real Qwen2 counts (byte-level BPE): "Hello world" is 2 tokens, each digit is one.
    assert estimate_text_tokens("Hello world") >= 2
    assert estimate_text_tokens("1234567890") >= 10
    assert estimate_text_tokens("你好世界") >= 4
    prose = "Convert this page to Markdown, keeping tables as HTML. " * 20
    assert len(prose) / 4 <= estimate_text_tokens(prose) <= len(prose) / 2


@given(st.text(max_size=200), st.text(max_size=200))
def test_text_estimate_grows_with_text(a: str, b: str) -> None:
    assert estimate_text_tokens(a + b) >= max(estimate_text_tokens(a), estimate_text_tokens(b))


def _need(sizes: list[tuple[int, int]], cap: int) -> int:
    return sum(image_tokens(*scaled_size(w, h, cap)) + IMAGE_WRAPPER_TOKENS for w, h in sizes)


def test_plan_returns_none_when_everything_fits() -> None:
    sizes = [(1024, 768)]
    budget = {"text_tokens": 100, "max_tokens": 1000, "min_side": 448}
    assert plan_max_side(sizes, max_model_len=8192, **budget) is None
    # Exactly full still fits: 999 + 2 + 100 + 1000.
    assert plan_max_side(sizes, max_model_len=2101, **budget) is None


def test_plan_finds_the_largest_cap_that_fits() -> None:
    sizes = [(1024, 1024), (1024, 768), (300, 200)]
    cap = plan_max_side(sizes, text_tokens=200, max_tokens=1024, max_model_len=2048, min_side=448)
    # By hand: 824 tokens for the images. 300x200 stays (7x11 blocks = 77, +2 = 79), leaving
    # 741 after the other two wrappers. At cap 574 the square is 20x20 = 400 (574/28 = 20.5,
    # which Python's round() takes to 20) and 1024x768 becomes 574x431, 20x15 = 300: 700 fits.
    # At 575 the square is 21x21 = 441 and the other 21x15 = 315: 756 does not (nor anything
    # up to 587, where it only grows).
    assert cap == 574
    budget = 2048 - 200 - 1024
    assert _need(sizes, cap) <= budget < _need(sizes, cap + 1)


def test_plan_refuses_with_the_numbers() -> None:
    sizes = [(4000, 3000)]
    with pytest.raises(ImageRejected) as caught:
        plan_max_side(sizes, text_tokens=120, max_tokens=4096, max_model_len=4300, min_side=448)
    message = caught.value.message
    assert caught.value.status == 400
    assert message.startswith("the images need ~15,303 tokens, the model's context is 4,300")
    assert "~120" in message and "4,096" in message and "448 px" in message
    # By hand: 4300 - 120 - 4096 = 84 left; at the 448 px floor the photo is 448x336, 16x12
    # blocks = 192 tokens, + 2 = 194.
    assert "leaving 84 for the images, which need ~194 even when shrunk to 448 px" in message
    at_floor = image_tokens(*scaled_size(4000, 3000, 448)) + IMAGE_WRAPPER_TOKENS
    assert at_floor == 194


def test_fit_shrinks_only_what_is_needed_and_never_below_the_floor() -> None:
    def png(size: tuple[int, int]) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", size, "white").save(buffer, "PNG")
        return buffer.getvalue()

    big = prepare_bytes(png((1024, 1024)), ImageOptions())
    small = prepare_bytes(png((400, 300)), ImageOptions())
    fitted = fit_images_to_context([big, small], 100, 512, 1536, 448)
    assert fitted[1] is small  # already under any cap
    # By hand: 924 tokens for the images; 400x300 takes 11x14 = 154 (+2), leaving 766 for the
    # square (+2): 27x27 = 729 fits, 28x28 = 784 does not. 769/28 = 27.46 rounds to 27;
    # 770/28 = 27.5 rounds to 28 (round half to even).
    assert (fitted[0].width, fitted[0].height) == (769, 769)
    total = sum(image_tokens(i.width, i.height) + IMAGE_WRAPPER_TOKENS for i in fitted)
    assert total + 100 + 512 <= 1536
    assert fit_images_to_context([big, small], 100, 512, 8192, 448) == [big, small]
    with pytest.raises(ImageRejected):
        fit_images_to_context([big, small], 100, 1200, 1536, 448)

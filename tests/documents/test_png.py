"""The rendered pages' PNG encoder (ocrflux.documents.png): exact pixels, any stride."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ocrflux.documents.png import encode_png


@settings(max_examples=50)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.sampled_from(["RGB", "L"]),
    st.integers(0, 5),
    st.randoms(use_true_random=False),
)
def test_round_trip_through_pillow(
    width: int, height: int, mode: str, padding: int, rnd: object
) -> None:
    channels = len(mode)
    stride = width * channels + padding
    rows = bytearray(rnd.randbytes(stride * height))  # type: ignore[attr-defined]
    png = encode_png(bytes(rows), width, height, stride, mode)
    decoded = Image.open(io.BytesIO(png))
    assert (decoded.format, decoded.mode, decoded.size) == ("PNG", mode, (width, height))
    expected = b"".join(rows[y * stride : y * stride + width * channels] for y in range(height))
    assert decoded.tobytes() == expected


def test_a_rendered_page_sized_image_decodes_exactly() -> None:
    page = Image.radial_gradient("L").resize((791, 1024)).convert("RGB")
    png = encode_png(page.tobytes(), 791, 1024, 791 * 3, "RGB")
    assert Image.open(io.BytesIO(png)).tobytes() == page.tobytes()


@pytest.mark.parametrize(("size", "stride", "length"), [
    ((0, 1), 3, 3),
    ((2, 2), 5, 12),  # stride shorter than a row
    ((2, 2), 6, 11),  # too few bytes
])  # fmt: skip
def test_impossible_shapes_are_refused(size: tuple[int, int], stride: int, length: int) -> None:
    with pytest.raises(ValueError):
        encode_png(bytes(length), size[0], size[1], stride, "RGB")

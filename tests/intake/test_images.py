"""Image decoding, refusals and normalisation (ocrflux.intake.images), all in-process."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageFile, JpegImagePlugin

from ocrflux.intake.image_input import ImageRejected, decode_base64, format_mb, sniff_mime
from ocrflux.intake.images import (
    ImageOptions,
    PreparedImage,
    prepare_bytes,
    prepare_inline,
    rotate,
    scaled_size,
    shrink,
    toolkit_size,
)
from tests.documents.pdfs import DOCX

OPTS = ImageOptions()


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def decoded(prepared: PreparedImage) -> Image.Image:
    image = Image.open(io.BytesIO(prepared.payload))
    image.load()
    return image


def marked(size: tuple[int, int]) -> Image.Image:
    """White image with a red block in the top-left corner (to follow rotations)."""
    image = Image.new("RGB", size, "white")
    image.paste((255, 0, 0), (0, 0, size[0] // 4, size[1] // 4))
    return image


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int, rows: int) -> bytes:
    """A real PNG: 1-bit grey, IHDR says width x height, IDAT holds `rows` zero rows."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(rows)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


# --- sources and pass-through ------------------------------------------------------------------


def test_data_url_within_bounds_is_forwarded_as_the_same_string() -> None:
    url = data_url(encode(Image.new("RGB", (300, 200), "blue"), "PNG"))
    prepared = prepare_inline(url, OPTS)
    assert prepared.data_url is url
    assert (prepared.width, prepared.height, prepared.mime) == (300, 200, "image/png")
    assert prepared.reencoded is False


@pytest.mark.parametrize(("fmt", "mime", "declared"), [
    ("JPEG", "image/jpeg", "image/jpg"),
    ("WEBP", "image/webp", "image/webp"),
])  # fmt: skip
def test_jpeg_and_webp_pass_through(fmt: str, mime: str, declared: str) -> None:
    data = encode(Image.new("RGB", (640, 480), "green"), fmt)
    url = data_url(data, declared)
    prepared = prepare_inline(url, OPTS)
    assert prepared.data_url is url
    assert prepared.mime == mime
    assert not prepared.reencoded


def test_wrongly_declared_type_is_relabelled_without_reencoding() -> None:
    data = encode(Image.new("RGB", (64, 64), "red"), "PNG")
    prepared = prepare_inline(data_url(data, "image/jpeg"), OPTS)
    assert prepared.data_url.startswith("data:image/png;base64,")
    assert prepared.payload == data
    assert not prepared.reencoded


@pytest.mark.parametrize("header", [
    "DATA:image/png;base64",
    "data:IMAGE/PNG;base64",
    "data:image/png;BASE64",
    "data:image/png;charset=utf-8;base64",
    "data:image/png;base64;x=y",
    "data: image/png ; base64",
])  # fmt: skip
def test_unusual_data_url_spellings_are_normalised(header: str) -> None:
    data = encode(Image.new("RGB", (64, 48), "red"), "PNG")
    b64 = base64.b64encode(data).decode()
    prepared = prepare_inline(f"{header},{b64}", OPTS)
    assert prepared.data_url == f"data:image/png;base64,{b64}"
    assert not prepared.reencoded


def test_bare_base64_becomes_a_data_url_with_the_same_bytes() -> None:
    data = encode(Image.new("L", (50, 40), 128), "PNG")
    prepared = prepare_inline(base64.b64encode(data).decode(), OPTS)
    assert prepared.data_url == data_url(data)
    assert (prepared.width, prepared.height) == (50, 40)


def test_line_wrapped_unpadded_and_url_safe_base64_is_forgiven() -> None:
    data = encode(Image.new("RGB", (33, 17), "yellow"), "PNG")
    text = base64.urlsafe_b64encode(data).decode().rstrip("=")
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    prepared = prepare_inline(data_url(data).split(",")[0] + "," + wrapped, OPTS)
    assert prepared.payload == data
    assert decode_base64(wrapped, 10_000) == data


def test_bytes_source_from_a_download() -> None:
    data = encode(Image.new("RGB", (120, 80), "white"), "JPEG")
    prepared = prepare_bytes(data, OPTS)
    assert prepared.data_url.startswith("data:image/jpeg;base64,")
    assert prepared.payload == data
    assert prepared.source_bytes == len(data)


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "data:image/png;base64,iVBORw0KGgo*not-base64*",
    "data:image/png;base64,!!!!",
    "%%%%",
])  # fmt: skip
def test_invalid_base64(url: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        prepare_inline(url, OPTS)
    assert caught.value.message == "not valid base64"
    assert caught.value.status == 400


@pytest.mark.parametrize(("url", "words"), [
    ("data:image/png,rawbytes", "must be base64-encoded"),
    ("data:image/png;base64", "no ','"),
    ("file:///etc/passwd", "unsupported URL scheme 'file'"),
    ("ftp://example.com/a.png", "unsupported URL scheme 'ftp'"),
    ("gopher://example.com/", "unsupported URL scheme 'gopher'"),
])  # fmt: skip
def test_malformed_sources(url: str, words: str) -> None:
    with pytest.raises(ImageRejected, match=words):
        prepare_inline(url, OPTS)


def test_size_cap_applies_before_decoding() -> None:
    # Not even valid base64: the size estimate alone must refuse it (413, not "not valid base64").
    huge = "data:image/png;base64," + "*" * (4 * 30 * 1024 * 1024 // 3)
    with pytest.raises(ImageRejected) as caught:
        prepare_inline(huge, OPTS)
    assert caught.value.status == 413
    assert caught.value.message == "image is 30 MB, the limit is 20 MB"


def test_size_cap_on_downloaded_bytes() -> None:
    data = encode(Image.effect_noise((200, 200), 80), "PNG")
    with pytest.raises(ImageRejected, match=r"the limit is 2 KB") as caught:
        prepare_bytes(data, ImageOptions(max_bytes=2048))
    assert caught.value.status == 413


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_an_inline_image_exactly_at_the_size_cap_is_accepted(padding: int) -> None:
    # Sizes 3n, 3n+1, 3n+2: base64 with no, two and one '=' of padding, none of it counted.
    png = encode(Image.new("RGB", (40, 30), "white"), "PNG")
    data = png + b"\0" * ((padding - len(png)) % 3)  # Pillow ignores bytes after IEND
    assert len(data) % 3 == padding
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    prepared = prepare_inline(url, ImageOptions(max_bytes=len(data)))
    assert (prepared.width, prepared.height) == (40, 30)
    with pytest.raises(ImageRejected) as caught:
        prepare_inline(url, ImageOptions(max_bytes=len(data) - 1))
    assert caught.value.status == 413
    assert (
        caught.value.message
        == f"image is {len(data):,} bytes, the limit is {len(data) - 1:,} bytes"
    )


def test_format_mb() -> None:
    assert format_mb(20 * 1024 * 1024) == "20 MB"
    assert format_mb(int(25.3 * 1024 * 1024)) == "25.3 MB"
    assert format_mb(65536) == "64 KB"


@pytest.mark.parametrize(("payload", "named"), [
    (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "image/svg+xml"),
    (b"<svg width='10'></svg>", "image/svg+xml"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "application/pdf"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "image/heic"),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1", "image/avif"),
    (b"<!DOCTYPE html><html></html>", "text/html"),
    (b"\x01\x02\x03 just bytes", "unknown"),
    (DOCX, "a Word document (.docx)"),
])  # fmt: skip
def test_unsupported_formats_are_named(payload: bytes, named: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        prepare_inline(base64.b64encode(payload).decode(), OPTS)
    assert caught.value.message.startswith(f"unsupported image format: {named}")
    assert caught.value.status == 400


@pytest.mark.parametrize(("fmt", "mime"), [
    ("PNG", "image/png"),
    ("JPEG", "image/jpeg"),
    ("WEBP", "image/webp"),
    ("GIF", "image/gif"),
    ("BMP", "image/bmp"),
    ("TIFF", "image/tiff"),
])  # fmt: skip
def test_sniffing_accepts_the_six_formats(fmt: str, mime: str) -> None:
    assert sniff_mime(encode(Image.new("RGB", (8, 8)), fmt)) == mime


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.usefixtures("no_pixel_decoding")
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_png_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = png_bomb(10_000, 10_000, rows=10_000)  # 100 MP, ~12 MB inflated, ~12 KB on the wire
    assert len(bomb) < 64 * 1024
    with pytest.raises(ImageRejected) as caught:
        prepare_inline(data_url(bomb), OPTS)
    assert caught.value.status == 413
    assert caught.value.message == ("image is 10000x10000 pixels, the limit is 64,000,000 pixels")


@pytest.mark.usefixtures("no_pixel_decoding")
def test_huge_bomb_hits_pillows_guard_and_gets_our_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64_000_000)  # as ImagePreparer aligns it
    bomb = png_bomb(30_000, 30_000, rows=10)
    with pytest.raises(ImageRejected) as caught:
        prepare_bytes(bomb, OPTS)
    assert caught.value.status == 413
    assert caught.value.message == "image has 900,000,000 pixels, the limit is 64,000,000 pixels"


def test_pixel_limit_setting() -> None:
    data = encode(Image.new("RGB", (200, 200)), "PNG")
    with pytest.raises(
        ImageRejected, match=r"^image is 200x200 pixels, the limit is 10,000 pixels$"
    ):
        prepare_bytes(data, ImageOptions(max_pixels=10_000))


def test_extreme_aspect_ratio_is_refused() -> None:
    data = encode(Image.new("L", (4020, 20)), "PNG")
    with pytest.raises(ImageRejected, match="aspect ratios up to 200:1"):
        prepare_bytes(data, OPTS)


def test_corrupt_pixel_data() -> None:
    data = encode(Image.effect_noise((2000, 1500), 50), "PNG")
    with pytest.raises(ImageRejected, match="could not be decoded as image/png"):
        prepare_bytes(data[: len(data) // 2], OPTS)  # too big: must be decoded, and is cut
    with pytest.raises(ImageRejected, match="could not be read as image/png"):
        prepare_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, OPTS)


# --- normalisation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "expected"), [
    ((3000, 2000), (1024, 683)),  # 2000 * 1024 / 3000 = 682.67 -> 683
    ((2000, 3000), (683, 1024)),
    ((4000, 3000), (1024, 768)),
    ((3001, 2000), (1024, 682)),  # 682.44 -> 682
    ((2048, 1001), (1024, 501)),  # 500.5 -> 501: halves round up
    ((5000, 100), (1024, 20)),  # 20.48 -> 20
    ((1025, 1025), (1024, 1024)),
])  # fmt: skip
def test_exact_output_size(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert scaled_size(*size, 1024) == expected
    prepared = prepare_bytes(encode(Image.new("RGB", size, "white"), "PNG"), OPTS)
    assert (prepared.width, prepared.height) == expected
    assert decoded(prepared).size == expected
    assert prepared.reencoded and prepared.mime == "image/png"


@pytest.mark.parametrize(("size", "expected"), [
    ((600, 800), (768, 1024)),  # 600 * 1.28 = 768: small pages are upscaled
    ((2000, 3000), (682, 1024)),  # 682.67 truncated (scaled_size rounds to 683)
    ((3000, 2000), (1024, 682)),
    ((1000, 1000), (1024, 1024)),  # square: the toolkit's portrait branch
    ((612, 792), (791, 1024)),  # a Letter page at 72 dpi: 791.27
    ((98, 49), (1024, 511)),  # 49 * (1024 / 98) = 511.99999999999994 in floats, as the toolkit
    ((100, 50), (1024, 512)),
    ((5000, 1), (1024, 1)),  # 0.2 -> at least one pixel
    ((1, 5000), (1, 1024)),
    ((1024, 1024), (1024, 1024)),
])  # fmt: skip
def test_toolkit_size(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert toolkit_size(*size, 1024) == expected


def test_toolkit_size_other_targets_and_zero() -> None:
    assert toolkit_size(600, 800, 512) == (384, 512)
    assert toolkit_size(3000, 2000, 0) == (3000, 2000)


def _toolkit_oracle(width: int, height: int, target: int) -> tuple[int, int]:
    # Restates chatdoc-com/OCRFlux@71954ad ocrflux/image_utils.py get_page_image (size only).
    if width > height:
        return target, int(height * (target / width))
    return int(width * (target / height)), target


@given(st.integers(1, 20_000), st.integers(1, 20_000), st.sampled_from([448, 1024, 1280, 2048]))
def test_toolkit_size_matches_the_toolkit(width: int, height: int, target: int) -> None:
    expected = _toolkit_oracle(width, height, target)
    got = toolkit_size(width, height, target)
    assert got == (max(1, expected[0]), max(1, expected[1]))
    assert max(got) == target


def test_never_upscales_and_max_side_zero_turns_resizing_off() -> None:
    small = encode(Image.new("RGB", (100, 50)), "PNG")
    assert (prepare_bytes(small, OPTS).width, prepare_bytes(small, OPTS).height) == (100, 50)
    big = encode(Image.new("RGB", (3000, 2000)), "PNG")
    prepared = prepare_bytes(big, ImageOptions(max_side=0))
    assert (prepared.width, prepared.height, prepared.reencoded) == (3000, 2000, False)


PAGES = ImageOptions(pages=True)  # OCRFlux mode: every image is a page at the toolkit's size


@pytest.mark.parametrize(("size", "fmt"), [
    ((600, 800), "PNG"),  # upscaled: 768x1024
    ((300, 200), "JPEG"),  # upscaled: 1024x682
    ((2000, 3000), "PNG"),  # downscaled, truncated: 682x1024
    ((4000, 3000), "JPEG"),  # downscaled through JPEG draft mode: 1024x768
])  # fmt: skip
def test_pages_are_sized_the_toolkits_way(size: tuple[int, int], fmt: str) -> None:
    prepared = prepare_bytes(encode(marked(size), fmt), PAGES)
    assert (prepared.width, prepared.height) == toolkit_size(*size, 1024)
    out = decoded(prepared).convert("RGB")
    assert out.size == (prepared.width, prepared.height)
    assert _close(out.getpixel((5, 5)), (255, 0, 0))  # the marked corner stays where it was


def test_a_page_already_at_the_toolkit_size_is_forwarded_as_is() -> None:
    data = encode(marked((768, 1024)), "PNG")
    prepared = prepare_bytes(data, PAGES)
    assert not prepared.reencoded and prepared.payload == data
    # Passthrough sizing forwards a small image as it is; a page is brought up to 1024.
    small = encode(marked((600, 800)), "PNG")
    assert not prepare_bytes(small, OPTS).reencoded
    assert prepare_bytes(small, PAGES).reencoded


def test_pages_keep_exif_alpha_and_cmyk_handling() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be turned 90 degrees clockwise for display
    turned = prepare_bytes(encode(marked((400, 300)), "JPEG", exif=exif.tobytes()), PAGES)
    assert (turned.width, turned.height) == (768, 1024)  # upright 300x400, then sized
    image = decoded(turned).convert("RGB")
    assert _close(image.getpixel((760, 5)), (255, 0, 0))  # stored top-left is now top-right
    clear = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    out = decoded(prepare_bytes(encode(clear, "PNG"), PAGES))
    assert out.size == (1024, 1024) and out.getpixel((500, 500)) == (255, 255, 255)
    cmyk = decoded(prepare_bytes(encode(Image.new("CMYK", (64, 64), (0, 0, 0, 0)), "JPEG"), PAGES))
    assert cmyk.mode == "RGB" and cmyk.size == (1024, 1024)
    assert _close(cmyk.getpixel((500, 500)), (255, 255, 255))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be turned 90 degrees clockwise for display
    data = encode(marked((300, 200)), fmt, exif=exif.tobytes())
    prepared = prepare_bytes(data, OPTS)
    assert prepared.reencoded
    assert (prepared.width, prepared.height) == (200, 300)
    image = decoded(prepared).convert("RGB")
    red = (255, 0, 0)
    # The stored top-left corner ends up top-right.
    assert _close(image.getpixel((190, 10)), red)
    assert _close(image.getpixel((10, 10)), (255, 255, 255))


@pytest.mark.parametrize("orientation", range(2, 9))
@pytest.mark.parametrize(("fmt", "params"), [
    ("PNG", {}),
    ("JPEG", {"quality": 95}),
    ("TIFF", {}),
    ("TIFF", {"compression": "tiff_lzw"}),  # decoded by libtiff, another Pillow path
])  # fmt: skip
def test_every_exif_orientation_is_applied_once(
    orientation: int, fmt: str, params: dict[str, object]
) -> None:
    from PIL import ImageOps

    stored = marked((240, 160))
    stored.paste((0, 0, 255), (180, 120, 240, 160))  # blue bottom-right: tells flips apart
    exif = Image.Exif()
    exif[0x0112] = orientation
    prepared = prepare_bytes(encode(stored, fmt, exif=exif.tobytes(), **params), OPTS)
    stored.info["exif"] = exif.tobytes()
    expected = ImageOps.exif_transpose(stored)  # Pillow's reference transposition
    image = decoded(prepared).convert("RGB")
    assert image.size == expected.size == (prepared.width, prepared.height)
    width, height = image.size
    for x, y in [(8, 8), (width - 8, 8), (8, height - 8), (width - 8, height - 8)]:
        assert _close(image.getpixel((x, y)), expected.getpixel((x, y))), (x, y)


def _close(pixel: object, expected: tuple[int, ...], tolerance: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def test_alpha_is_flattened_onto_white() -> None:
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))  # transparent black
    image.paste((255, 0, 0, 128), (50, 0, 100, 100))  # half-transparent red
    prepared = prepare_bytes(encode(image, "PNG"), OPTS)
    assert prepared.reencoded
    out = decoded(prepared)
    assert out.mode == "RGB"
    assert out.getpixel((10, 50)) == (255, 255, 255)
    assert _close(out.getpixel((75, 50)), (255, 127, 127), tolerance=2)


def test_palette_transparency_and_grey_alpha_are_flattened() -> None:
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    out = decoded(prepare_bytes(encode(palette, "PNG", transparency=0), OPTS))
    assert out.getpixel((5, 5)) == (255, 255, 255)
    grey = Image.new("LA", (40, 40), (0, 0))
    out = decoded(prepare_bytes(encode(grey, "PNG"), OPTS))
    assert out.mode == "L" and out.getpixel((5, 5)) == 255


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    grey = Image.new("I;16", (30, 30), 32768)
    grey.putpixel((0, 0), 65535)
    out = decoded(prepare_bytes(encode(grey, "PNG"), OPTS))
    assert out.mode == "L"
    assert 120 <= out.getpixel((10, 10)) <= 135  # half grey, where a plain convert gives 255


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_reencoded(fmt: str) -> None:
    prepared = prepare_bytes(encode(Image.new("RGB", (90, 60), "red"), fmt), OPTS)
    assert prepared.reencoded and prepared.mime == "image/png"
    assert decoded(prepared).size == (90, 60)


def test_first_frame_of_a_gif_and_first_page_of_a_tiff() -> None:
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "blue")]
    for fmt in ("GIF", "TIFF"):
        data = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
        out = decoded(prepare_bytes(data, OPTS)).convert("RGB")
        assert _close(out.getpixel((5, 5)), (255, 0, 0))


def test_cmyk_jpeg_is_reencoded_as_rgb() -> None:
    data = encode(Image.new("CMYK", (64, 64), (0, 0, 0, 0)), "JPEG")
    out = decoded(prepare_bytes(data, OPTS))
    assert out.mode == "RGB"
    assert _close(out.getpixel((5, 5)), (255, 255, 255))


def test_jpeg_output_format_setting() -> None:
    data = encode(Image.new("RGB", (3000, 2000), "white"), "PNG")
    prepared = prepare_bytes(data, ImageOptions(fmt="jpeg", jpeg_quality=80))
    assert prepared.mime == "image/jpeg" and prepared.data_url.startswith("data:image/jpeg;")
    assert decoded(prepared).format == "JPEG"


def test_auto_format_keeps_photos_jpeg_and_the_rest_png() -> None:
    auto = ImageOptions(fmt="auto")
    photo = encode(Image.new("RGB", (3000, 2000), "white"), "JPEG")
    scan = encode(Image.new("RGB", (3000, 2000), "white"), "PNG")
    assert prepare_bytes(photo, auto).mime == "image/jpeg"
    assert prepare_bytes(scan, auto).mime == "image/png"
    assert prepare_bytes(photo, OPTS).mime == "image/png"


def test_big_jpeg_uses_draft_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded_sizes: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.load

    def spy(self: JpegImagePlugin.JpegImageFile) -> object:
        decoded_sizes.append(self.size)
        return original(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    photo = encode(Image.linear_gradient("L").resize((4000, 3000)).convert("RGB"), "JPEG")
    prepared = prepare_bytes(photo, OPTS)
    assert (prepared.width, prepared.height) == (1024, 768)
    # 12 MP decoded at 1/2 scale: the DCT does the first halving, not a full decode.
    assert decoded_sizes and set(decoded_sizes) == {(2000, 1500)}


# --- rotate and shrink -------------------------------------------------------------------------


def test_rotate_turns_clockwise_as_the_toolkit_does() -> None:
    prepared = prepare_bytes(encode(marked((300, 200)), "PNG"), OPTS)
    turned = rotate(prepared, 90)
    assert (turned.width, turned.height) == (200, 300)
    assert decoded(turned).getpixel((190, 10)) == (255, 0, 0)  # top-left went to top-right
    assert decoded(rotate(prepared, 180)).getpixel((290, 190)) == (255, 0, 0)
    assert decoded(rotate(prepared, 270)).getpixel((10, 290)) == (255, 0, 0)
    assert rotate(prepared, 0) is prepared
    with pytest.raises(ValueError, match="multiple of 90"):
        rotate(prepared, 45)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotate_equals_the_toolkits_rotation(degrees: int) -> None:
    # chatdoc-com/OCRFlux@71954ad ocrflux/image_utils.py get_page_image:
    # image.rotate(-image_rotation, expand=True)
    source = marked((300, 200))
    expected = source.rotate(-degrees, expand=True)
    turned = decoded(rotate(prepare_bytes(encode(source, "PNG"), OPTS), degrees))
    assert turned.tobytes() == expected.convert(turned.mode).tobytes()


def test_shrink() -> None:
    prepared = prepare_bytes(encode(marked((1000, 800)), "PNG"), OPTS)
    small = shrink(prepared, 500)
    assert (small.width, small.height) == (500, 400)
    assert decoded(small).size == (500, 400)
    assert shrink(prepared, 1000) is prepared
    assert shrink(small, 600) is small

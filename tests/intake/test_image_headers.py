"""Bounded header work (ocrflux.intake.image_headers) and its use by the image checks."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image, ImageChops, PngImagePlugin

from ocrflux.intake.image_headers import (
    MAX_EXIF_ENTRIES,
    MAX_JPEG_SEGMENTS,
    MAX_PNG_CHUNKS,
    QUICK_PNG_CHUNKS,
    HeaderRefused,
    exif_orientation,
    strip_metadata,
)
from ocrflux.intake.images import ImageOptions, ImageRejected, check_inline, prepare_inline

OPTS = ImageOptions()
# 1 MB of zeros deflates to ~1 KB: Pillow inflates each such text chunk back to 1 MB.
INFLATES_TO_1MB = zlib.compress(b"\x00" * (1 << 20), 9)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def page(size: tuple[int, int] = (320, 200)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    image.paste((200, 30, 30), (10, 10, size[0] // 3, size[1] // 3))
    return image


def chunk_types(png: bytes) -> list[bytes]:
    kinds, pos = [], 8
    while pos + 8 <= len(png):
        length, kind = struct.unpack_from(">I4s", png, pos)
        kinds.append(kind)
        pos += 12 + length
    return kinds


def with_chunks(png: bytes, before_idat: bytes = b"", after_idat: bytes = b"") -> bytes:
    """`png` with extra chunks after IHDR and before IEND."""
    ihdr_end = 8 + 25
    return png[:ihdr_end] + before_idat + png[ihdr_end:-12] + after_idat + png[-12:]


def url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def same_pixels(a: bytes, b: bytes) -> bool:
    with Image.open(io.BytesIO(a)) as first, Image.open(io.BytesIO(b)) as second:
        return ImageChops.difference(first.convert("RGB"), second.convert("RGB")).getbbox() is None


# --- PNG ---------------------------------------------------------------------------------------


def test_png_text_and_profiles_are_removed_before_pillow_reads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inflated: list[int] = []
    original = PngImagePlugin._safe_zlib_decompress

    def counting(data: bytes) -> bytes:
        inflated.append(len(data))
        return original(data)

    monkeypatch.setattr(PngImagePlugin, "_safe_zlib_decompress", counting)
    plain = encode(page(), "PNG")
    texts = b"".join(chunk(b"zTXt", b"k%d\x00\x00" % i + INFLATES_TO_1MB) for i in range(32))
    profiles = b"".join(chunk(b"iCCP", b"p%d\x00\x00" % i + INFLATES_TO_1MB) for i in range(8))
    bomb = with_chunks(
        plain, texts + profiles + chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00<x/>")
    )
    assert len(bomb) < 80_000  # 40 MB once inflated

    prepared = check_inline(url(bomb), OPTS)  # the event loop's check
    assert prepared is not None
    assert inflated == []
    assert prepared.payload == plain  # what vLLM receives: no text, no profile
    assert (prepared.width, prepared.height, prepared.reencoded) == (320, 200, False)


def test_png_text_after_the_image_data_is_removed_too() -> None:
    plain = encode(page(), "PNG")
    tail = b"".join(chunk(b"zTXt", b"c%d\x00\x00" % i + INFLATES_TO_1MB) for i in range(4))
    tail += chunk(b"tEXt", b"Comment\x00hello")
    cleaned = strip_metadata(with_chunks(plain, after_idat=tail), "image/png")
    assert cleaned == plain


def test_png_keeps_what_changes_pixels_and_the_same_object_when_clean() -> None:
    image = Image.new("P", (64, 48), 0)
    image.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    image.info["transparency"] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    png = encode(image, "PNG", exif=exif.tobytes(), pnginfo=_text_info())
    cleaned = strip_metadata(png, "image/png")
    assert cleaned is not None
    kinds = chunk_types(cleaned)
    assert {b"PLTE", b"tRNS", b"eXIf", b"IDAT"} <= set(kinds)
    assert b"tEXt" not in kinds and b"zTXt" not in kinds
    assert same_pixels(png, cleaned)
    assert strip_metadata(cleaned, "image/png") is cleaned


def _text_info() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "scanner 1.0")
    info.add_text("Comment", "x" * 5000, zip=True)
    return info


def test_png_with_absurdly_many_chunks_goes_off_the_loop_then_is_refused() -> None:
    plain = encode(page(), "PNG")
    some = with_chunks(plain, chunk(b"tiNy", b"") * (QUICK_PNG_CHUNKS + 10))
    assert strip_metadata(some, "image/png", quick=True) is None  # too long for the loop
    assert strip_metadata(some, "image/png") is some  # fine in a thread: nothing to drop
    assert check_inline(url(some), OPTS) is None
    many = with_chunks(plain, chunk(b"tiNy", b"") * MAX_PNG_CHUNKS)
    with pytest.raises(HeaderRefused, match="PNG has more than 32,768 chunks"):
        strip_metadata(many, "image/png")
    with pytest.raises(ImageRejected, match="PNG has more than 32,768 chunks"):
        prepare_inline(url(many), OPTS)


# --- JPEG --------------------------------------------------------------------------------------


def segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, first bytes of the body) of every segment before the first scan."""
    out, pos = [], 2
    while data[pos + 1] != 0xDA:
        length = struct.unpack_from(">H", data, pos + 2)[0]
        out.append((data[pos + 1], data[pos + 4 : pos + 4 + 12]))
        pos += 2 + length
    return out


@pytest.mark.filterwarnings("ignore:Image appears to be a malformed MPO file")
def test_jpeg_comments_photoshop_xmp_and_mpf_are_removed_exif_and_icc_kept() -> None:
    exif = Image.Exif()
    exif[0x0112] = 3
    photo = encode(page(), "JPEG", exif=exif.tobytes(), icc_profile=b"\x00" * 300)
    photoshop = b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00\x00\x00\x00\x00" * 5000
    extra = (
        segment(0xFE, b"a comment")
        + segment(0xED, photoshop)
        + segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>")
        + segment(0xE2, b"MPF\x00" + b"\x00" * 40)
        + segment(0xEC, b"Ducky" + b"\x00" * 10)
    )
    dirty = photo[:2] + extra + photo[2:]
    cleaned = strip_metadata(dirty, "image/jpeg")
    assert cleaned is not None
    markers = [marker for marker, _ in jpeg_segments(cleaned)]
    assert markers == [marker for marker, _ in jpeg_segments(photo)]
    assert 0xE1 in markers and 0xE2 in markers  # EXIF (orientation) and the ICC profile
    assert len(cleaned) == len(photo) and same_pixels(dirty, cleaned)
    with Image.open(io.BytesIO(cleaned)) as image:
        assert image.format == "JPEG"  # not MPO: the extra pictures are gone
        assert exif_orientation(image.info["exif"]) == 3
        assert image.info["icc_profile"] == b"\x00" * 300
    assert strip_metadata(photo, "image/jpeg") is photo


@pytest.mark.parametrize(
    ("insert", "message"),
    [
        (segment(0xFE, b"") * (MAX_JPEG_SEGMENTS + 1), "JPEG has more than 1,024 segments"),
        (segment(0xDB, b"\x00" + b"\x01" * 64) * 80, "quantization tables too large"),
        (b"\xff\x00" * 100, "could not be read as image/jpeg"),
        (segment(0xFE, b"x") + b"\x12\x34", "could not be read as image/jpeg"),
    ],
)
def test_jpeg_headers_no_encoder_writes_are_refused(insert: bytes, message: str) -> None:
    photo = encode(page(), "JPEG")
    with pytest.raises(ImageRejected, match=message):
        check_inline(url(photo[:2] + insert + photo[2:], "image/jpeg"), OPTS)


def test_jpeg_fill_bytes_are_dropped_quickly() -> None:
    photo = encode(page(), "JPEG")
    padded = photo[:2] + b"\xff" * 1_000_000 + photo[2:]  # legal padding before a marker
    assert strip_metadata(padded, "image/jpeg") == photo


# --- EXIF orientation --------------------------------------------------------------------------


@pytest.mark.parametrize("value", range(1, 9))
@pytest.mark.parametrize("prefix", [b"", b"Exif\x00\x00"])
def test_exif_orientation_reads_what_pillow_reads(value: int, prefix: bytes) -> None:
    exif = Image.Exif()
    exif[0x010F] = "ScanCo"
    exif[0x0112] = value
    exif[0x0131] = "firmware 2"
    raw = prefix + exif.tobytes().removeprefix(b"Exif\x00\x00")
    reference = Image.Exif()
    reference.load(raw)
    assert exif_orientation(raw) == reference[0x0112] == value


def test_exif_orientation_big_endian_and_broken_blocks() -> None:
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, 8, 0)
    big_endian = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry
    assert exif_orientation(big_endian) == 8
    assert exif_orientation(b"") == 1
    assert exif_orientation(b"II*\x00\xff\xff\xff\xff") == 1  # IFD offset past the end
    assert exif_orientation(big_endian.replace(b"\x00\x08\x00\x00", b"\x00\x09\x00\x00")) == 1
    assert exif_orientation(big_endian[:-4]) == 1  # cut inside the entry


def test_exif_orientation_reads_a_bounded_number_of_entries() -> None:
    filler = struct.pack("<HHII", 0x0100, 3, 1, 1) * 65534
    orientation = struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0)
    early = b"II*\x00" + struct.pack("<IH", 8, 65535) + orientation + filler
    late = b"II*\x00" + struct.pack("<IH", 8, 65535) + filler + orientation
    assert exif_orientation(early) == 6
    assert exif_orientation(late) == 1  # beyond MAX_EXIF_ENTRIES: not looked at
    assert MAX_EXIF_ENTRIES < 65535


# --- the event loop's check --------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "mime"), [("GIF", "image/gif"), ("TIFF", "image/tiff")])
def test_formats_that_are_reencoded_anyway_are_not_opened_on_the_loop(
    monkeypatch: pytest.MonkeyPatch, fmt: str, mime: str
) -> None:
    data = encode(page().convert("P") if fmt == "GIF" else page(), fmt)
    opened: list[object] = []
    original = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or original(*a, **k))
    assert check_inline(url(data, mime), OPTS) is None
    assert opened == []
    assert prepare_inline(url(data, mime), OPTS).mime == "image/png"
    assert len(opened) == 1

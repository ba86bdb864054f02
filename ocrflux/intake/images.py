"""Image preparation: decode, refuse what is dangerous, normalise to what the model was trained on.

Everything here is synchronous, pure CPU work (`ocrflux.intake.preparation.ImagePreparer` runs it in
a bounded thread pool). The upstream only ever receives `data:` URLs.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from typing import IO, TYPE_CHECKING, Literal

import pybase64
from PIL import Image

from ocrflux.intake.image_headers import HeaderRefused, exif_orientation, strip_metadata
from ocrflux.intake.image_input import (
    ImageRejected,
    b64decode,
    check_encoded_size,
    sniff_mime,
    split_inline,
    too_big,
)

if TYPE_CHECKING:
    from ocrflux.settings import Settings

_MB = 1024 * 1024
# Formats vLLM decodes as they are; the rest (GIF, BMP, TIFF) are re-encoded.
_PASSTHROUGH = frozenset({"image/png", "image/jpeg", "image/webp"})
_PIL_FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
}
# Qwen2.5-VL's processor refuses more extreme aspect ratios.
MAX_ASPECT_RATIO = 200
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class ImageOptions:
    """The image settings the sync functions need (picklable, no Settings object)."""

    max_side: int = 1024
    # "auto": JPEG out for JPEG sources (already lossy; PNG would be ~6x bigger and ~20x slower
    # to encode for a photo), PNG for the rest.
    fmt: Literal["png", "jpeg", "auto"] = "png"
    jpeg_quality: int = 92
    max_bytes: int = 20 * _MB
    max_pixels: int = 64_000_000
    # OCRFlux mode: every image is a page, sized as the toolkit sizes pages (`toolkit_size`:
    # small ones upscaled too); otherwise images are only ever downscaled (`scaled_size`).
    pages: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageOptions:
        return cls(
            max_side=settings.image_max_side,
            fmt=settings.image_format,
            jpeg_quality=settings.image_jpeg_quality,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            pages=settings.prompt_mode == "ocrflux",
        )

    def target(self, width: int, height: int) -> tuple[int, int]:
        """The size an upright image of this size is sent at."""
        if self.pages:
            return toolkit_size(width, height, self.max_side)
        return scaled_size(width, height, self.max_side)


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for the upstream: always a base64 `data:` URL."""

    data_url: str = field(repr=False)
    width: int
    height: int
    mime: str
    reencoded: bool
    source_bytes: int = 0  # encoded size received from the client (for logs and benchmarks)

    @property
    def payload(self) -> bytes:
        """The encoded image bytes inside `data_url` (decoded on demand: rarely needed)."""
        return pybase64.b64decode(self.data_url.partition(",")[2])


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Downscale-only target: the longest side becomes `max_side` (0: unchanged).

    The other side is `short * max_side / long` rounded half up, at least 1 pixel
    (3000x2000 at 1024 -> 1024x683).
    """
    longest = max(width, height)
    if max_side <= 0 or longest <= max_side:
        return width, height
    if width >= height:
        return max_side, max(1, (2 * height * max_side + width) // (2 * width))
    return max(1, (2 * width * max_side + height) // (2 * height)), max_side


def toolkit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """OCRFlux's page size: the longest side becomes exactly `max_side`, small pages upscaled.

    The other side is truncated as the toolkit's `image_utils.get_page_image` does, float
    arithmetic included (`int(height * (max_side / width))`, so 98x49 -> 1024x511, not 512);
    a square is treated as portrait there, with the same result. At least 1 pixel (the
    toolkit would make a 0-pixel side for a 5000x1 page). `max_side` 0: unchanged.
    """
    if max_side <= 0:
        return width, height
    if width > height:
        return max_side, max(1, int(height * (max_side / width)))
    return max(1, int(width * (max_side / height))), max_side


# --- reading the header ------------------------------------------------------------------------


def check_size(image: Image.Image, max_pixels: int) -> None:
    """ImageRejected if the (header) size is over `max_pixels` or past the model's aspect ratio."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            f"image is {width}x{height} pixels, the limit is {max_pixels:,} pixels", 413
        )
    if width < 1 or height < 1 or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageRejected(
            f"image is {width}x{height} pixels; the model accepts aspect ratios up to "
            f"{MAX_ASPECT_RATIO}:1"
        )


def _bomb(exc: Image.DecompressionBombError, max_pixels: int) -> ImageRejected:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"has {int(found.group(1)):,} pixels" if found else "is too large"
    return ImageRejected(f"image {size}, the limit is {max_pixels:,} pixels", 413)


def open_image(data: bytes | IO[bytes], mime: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse decompression bombs before any pixel is decoded."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        image = Image.open(source, formats=[_PIL_FORMATS[mime]])
    except Image.DecompressionBombError as exc:  # Pillow's own guard (2x MAX_IMAGE_PIXELS)
        raise _bomb(exc, max_pixels) from None
    except Exception:  # Pillow raises many types on malformed input
        raise ImageRejected(f"image data could not be read as {mime}") from None
    check_size(image, max_pixels)
    return image


def _orientation(image: Image.Image) -> int:
    """EXIF orientation still to apply, from the header only (getexif() may decode a PNG).

    Pillow's TIFF reader applies the orientation tag itself (the header size is already the
    upright one, and loading transposes the pixels), so for a TIFF nothing is left to do.
    """
    if image.format == "TIFF":
        return 1
    raw = image.info.get("exif")
    return exif_orientation(raw) if isinstance(raw, bytes) else 1


def _needs_work(image: Image.Image, mime: str, opts: ImageOptions) -> bool:
    if mime not in _PASSTHROUGH or _orientation(image) != 1:
        return True
    if opts.target(*image.size) != image.size:
        return True
    # Anything vLLM's plain convert("RGB") would get wrong: alpha (black, not white,
    # background), CMYK, 16-bit grey.
    if image.mode == "P":
        return "transparency" in image.info
    return image.mode not in ("RGB", "L")


# --- normalising ------------------------------------------------------------------------------

# Pillow's reduce() by an integer factor first, then LANCZOS over the last >= 2x: the speed of
# a box pre-shrink, with a result Pillow documents as near fair resampling (thumbnail's default).
_REDUCING_GAP = 2.0
# zlib-ng level 1 is ~2x faster than 6 and, on text pages, not larger; vLLM sits on a fast link.
_PNG_COMPRESS_LEVEL = 1
_MIME_ALIASES = {
    "image/jpeg": ("image/jpeg", "image/jpg", "image/pjpeg"),
    "image/png": ("image/png",),
    "image/webp": ("image/webp",),
}


def _data_url(mime: str, b64: str) -> str:
    return f"data:{mime};base64,{b64}"


@dataclass
class Probe:
    """An image read up to its header: everything preparing it needs, no pixel decoded yet."""

    mime: str
    image: Image.Image = field(repr=False)  # opened lazily: header only
    data: bytes = field(repr=False)  # the bytes to use (costly metadata removed)
    source: int  # encoded size received from the client
    # The client's data URL when vLLM can read it as sent, and its base64 when that is clean.
    url: str | None = field(default=None, repr=False)
    b64: str | None = field(default=None, repr=False)

    @property
    def upright(self) -> tuple[int, int]:
        """(width, height) once EXIF orientation is applied."""
        width, height = self.image.size
        return (height, width) if _orientation(self.image) in (5, 6, 7, 8) else (width, height)

    def size_after(self, opts: ImageOptions) -> tuple[int, int]:
        """(width, height) preparing it with `opts` will produce."""
        return opts.target(*self.upright)

    def needs_work(self, opts: ImageOptions) -> bool:
        return _needs_work(self.image, self.mime, opts)


def probe_bytes(data: bytes, opts: ImageOptions, *, quick: bool = False) -> Probe | None:
    """Encoded image bytes (e.g. a download) read up to the header; refused if unacceptable.

    With `quick` (on the event loop) None means the header work is not trivially cheap: do it
    in a thread. The bytes kept are `data` without costly metadata (see image_headers).
    """
    if len(data) > opts.max_bytes:
        raise too_big(len(data), opts.max_bytes)
    mime = sniff_mime(data)
    if quick and mime not in _PASSTHROUGH:
        return None  # re-encoded anyway, so opened in a thread; GIF and TIFF headers can be big
    try:
        cleaned = strip_metadata(data, mime, quick=quick)
    except HeaderRefused as exc:
        raise ImageRejected(str(exc)) from None
    if cleaned is None:
        return None
    return Probe(mime, open_image(cleaned, mime, opts.max_pixels), cleaned, len(data))


def probe_inline(url: str, opts: ImageOptions, *, quick: bool = False) -> Probe | None:
    """A `data:` URL or bare base64 read up to the header (see `probe_bytes`)."""
    declared, b64 = split_inline(url)
    check_encoded_size(b64, opts.max_bytes)
    data, strict = b64decode(b64)
    probe = probe_bytes(data, opts, quick=quick)
    if probe is None or probe.data is not data or not strict:
        return probe
    probe.b64 = b64
    # vLLM reads only this exact spelling: not `DATA:`, `;BASE64`, `;charset=...;base64`.
    if declared in _MIME_ALIASES.get(probe.mime, ()) and url.startswith(f"data:{declared};base64,"):
        probe.url = url
    return probe


def finish(probe: Probe, opts: ImageOptions) -> PreparedImage:
    """The prepared image: pixels decoded only when something has to change."""
    image, mime = probe.image, probe.mime
    if probe.needs_work(opts):
        return _normalize(image, mime, opts, probe.source)
    url = probe.url or _data_url(mime, probe.b64 or pybase64.b64encode(probe.data).decode("ascii"))
    return PreparedImage(url, image.width, image.height, mime, False, probe.source)


def prepare_inline(url: str, opts: ImageOptions) -> PreparedImage:
    """A `data:` URL or bare base64 -> PreparedImage; the same string object when nothing changes.

    Pixels are decoded only when something has to change: Image.open reads the header alone.
    """
    probe = probe_inline(url, opts)
    assert probe is not None  # not quick: every path returns a probe
    return finish(probe, opts)


def check_inline(url: str, opts: ImageOptions) -> PreparedImage | None:
    """`prepare_inline` without touching pixels: None when the image needs pixel work.

    Header-only work (base64 check, sniffing, the header): ~0.2 ms for a 1 MB page, cheap
    enough for the event loop, which then skips a thread hop for the common case.
    """
    probe = probe_inline(url, opts, quick=True)
    if probe is None or probe.needs_work(opts):
        return None
    return finish(probe, opts)


def prepare_bytes(data: bytes, opts: ImageOptions) -> PreparedImage:
    """Encoded image bytes (e.g. a download) -> PreparedImage."""
    probe = probe_bytes(data, opts)
    assert probe is not None  # not quick: every path returns a probe
    return finish(probe, opts)


def _normalize(image: Image.Image, mime: str, opts: ImageOptions, source: int) -> PreparedImage:
    upright = decode_upright(image, mime, opts.target)
    return _encoded(upright, opts, source, mime)


def decode_upright(
    image: Image.Image, mime: str, target: Callable[[int, int], tuple[int, int]]
) -> Image.Image:
    """An opened image's pixels as the model should see them, at `target(upright w, h)`.

    EXIF orientation applied; RGB or L (alpha flattened onto white; palette, CMYK and 16-bit
    grey converted). ImageRejected if the pixel data cannot be decoded.
    """
    orientation = _orientation(image)
    swapped = orientation in (5, 6, 7, 8)
    width, height = image.size
    upright = (height, width) if swapped else (width, height)
    size = target(*upright)
    try:
        if mime == "image/jpeg" and max(size) < max(upright):
            # Reduced-scale DCT decoding (1/2, 1/4, 1/8): never below the requested size, and a
            # 12 MP photo is not fully decoded just to be shrunk.
            image.draft(None, (size[1], size[0]) if swapped else size)
        image.load()
    except Exception:  # truncated or corrupt pixel data
        raise ImageRejected(f"image data could not be decoded as {mime}") from None
    if orientation != 1:
        image = image.transpose(_TRANSPOSE[orientation])
    image = _resizable(image)
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    return _flatten(image)


def _resizable(image: Image.Image) -> Image.Image:
    """A mode that resizes correctly: RGB(A) or L(A)."""
    mode = image.mode
    if mode in ("RGB", "L", "RGBA", "LA"):
        return image
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode in ("1", "La"):
        return image.convert("LA" if mode == "La" else "L")
    if mode.startswith("I") or mode == "F":
        # 16/32-bit grey: stretch to 8 bits (a plain convert clips everything above 255 to white).
        image = image.convert("F")
        high = image.getextrema()[1]
        scale = 255.0 / high if isinstance(high, (int, float)) and high > 255 else 1.0
        return image.point(lambda v: v * scale).convert("L")
    return image.convert("RGBA" if "A" in mode else "RGB")  # CMYK, YCbCr, LAB, RGBa, ...


def _flatten(image: Image.Image) -> Image.Image:
    """Alpha onto white: vLLM's convert("RGB") would otherwise show transparency as black."""
    if image.mode not in ("RGBA", "LA"):
        return image
    background = Image.new(image.mode[:-1], image.size, "white")
    background.paste(image, mask=image.getchannel("A"))
    return background


def _encoded(
    image: Image.Image, opts: ImageOptions, source: int, source_mime: str
) -> PreparedImage:
    buffer = io.BytesIO()
    if opts.fmt == "jpeg" or (opts.fmt == "auto" and source_mime == "image/jpeg"):
        image.save(buffer, "JPEG", quality=opts.jpeg_quality)
        mime = "image/jpeg"
    else:
        image.save(buffer, "PNG", compress_level=_PNG_COMPRESS_LEVEL)
        mime = "image/png"
    b64 = pybase64.b64encode(buffer.getvalue()).decode("ascii")
    return PreparedImage(_data_url(mime, b64), image.width, image.height, mime, True, source)


def rotate(
    prepared: PreparedImage, degrees: int, opts: ImageOptions | None = None
) -> PreparedImage:
    """Turn the image clockwise by 90/180/270 degrees: OCRFlux's `rotation_correction`.

    The toolkit and olmOCR turn a page with `image.rotate(-rotation_correction, expand=True)`
    (PIL's rotate is counter-clockwise). Re-encoded in the configured format.
    """
    turn = degrees % 360
    if turn not in (0, 90, 180, 270):
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {degrees}")
    if turn == 0:
        return prepared
    opts = opts or ImageOptions()
    image = open_image(
        prepared.payload, prepared.mime, max(opts.max_pixels, prepared.width * prepared.height)
    )
    try:
        image.load()
    except Exception:
        raise ImageRejected(f"image data could not be decoded as {prepared.mime}") from None
    clockwise = {
        90: Image.Transpose.ROTATE_270,
        180: Image.Transpose.ROTATE_180,
        270: Image.Transpose.ROTATE_90,
    }
    turned = image.transpose(clockwise[turn])
    return _encoded(_flatten(_resizable(turned)), opts, prepared.source_bytes, prepared.mime)


def shrink(
    prepared: PreparedImage, max_side: int, opts: ImageOptions | None = None
) -> PreparedImage:
    """Downscale so the longest side is at most `max_side` (the token budget's tool)."""
    if max_side <= 0 or max(prepared.width, prepared.height) <= max_side:
        return prepared
    opts = dataclass_replace(opts or ImageOptions(), max_side=max_side)
    image = open_image(prepared.payload, prepared.mime, _limit(prepared, opts))
    return _normalize(image, prepared.mime, opts, prepared.source_bytes)


def _limit(prepared: PreparedImage, opts: ImageOptions) -> int:
    # Already accepted once: a later call with other options must not refuse it now.
    return max(opts.max_pixels, prepared.width * prepared.height)

"""Documents to page images (ocrflux.documents.render), through a real spawn process pool."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from functools import partial
from typing import Any

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageChops, ImageStat

from ocrflux.documents.render import DocumentRenderer, OpenDocument, RenderedPage
from ocrflux.documents.sources import DocumentRejected
from tests.documents.pdfs import (
    A4,
    LETTER,
    Page,
    corrupt_pdf,
    encrypted_pdf,
    filler,
    make_pdf,
    multipage_tiff,
    slow_pdf,
    text_heavy_pdf,
    text_page,
    xfa_pdf,
    zero_page_pdf,
)


@pytest.fixture(scope="module")
def renderer() -> Iterator[DocumentRenderer]:
    rendering = DocumentRenderer(workers=2, max_side=1024)
    yield rendering
    asyncio.run(rendering.aclose())


def pixels(page: RenderedPage) -> Image.Image:
    image = Image.open(io.BytesIO(page.image.payload))
    assert page.image.data_url.startswith("data:image/png;base64,")
    assert (image.format, image.size) == ("PNG", (page.image.width, page.image.height))
    return image.convert("RGB")


async def render_all(renderer: DocumentRenderer, data: bytes) -> list[RenderedPage]:
    doc = await renderer.open(data)
    try:
        return list(await asyncio.gather(*(renderer.render(doc, i) for i in range(doc.num_pages))))
    finally:
        await renderer.close(doc)


def dark(image: Image.Image, box: tuple[int, int, int, int]) -> bool:
    return ImageStat.Stat(image.crop(box).convert("L")).mean[0] < 64


# --- sizes ------------------------------------------------------------------------------------


async def test_pdf_pages_come_out_at_the_toolkits_size(renderer: DocumentRenderer) -> None:
    sizes = [LETTER, A4, (842, 595), (100.4, 50.2), (1000.7, 3000.2), (300, 300)]
    pages = await render_all(renderer, make_pdf([Page(w, h, ("Text.",)) for w, h in sizes]))
    # Worked by hand from the toolkit's rule on its 72-dpi render (ceil of the points):
    # 612x792 -> 612 * 1024/792 = 791.3; A4 596x842 -> 724.8; 842x595 -> 723.6;
    # 101x51 -> 51 * 1024/101 = 517.1;
    # 1001x3001 -> 341.6; a 300-point square is upscaled to 1024.
    expected = [(791, 1024), (724, 1024), (1024, 723), (1024, 517), (341, 1024), (1024, 1024)]
    assert [(p.image.width, p.image.height) for p in pages] == expected
    assert [pixels(p).size for p in pages] == expected
    assert [p.index for p in pages] == list(range(6))
    # dpi: 72 x the scale from points (Letter: 72 * 1024 / 792 = 93.1).
    assert [p.dpi for p in pages] == [93, 88, 88, 734, 25, 246]
    assert all(p.image.mime == "image/png" and p.image.reencoded for p in pages)


async def test_other_max_side(renderer: DocumentRenderer) -> None:
    small = DocumentRenderer(workers=1, max_side=512)
    try:
        [page] = await render_all(small, make_pdf([Page(*LETTER)]))
    finally:
        await small.aclose()
    assert (page.image.width, page.image.height, page.dpi) == (395, 512, 47)


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean grey difference at a quarter of the size (sub-pixel glyph shifts average out)."""
    return ImageStat.Stat(ImageChops.difference(a.reduce(4), b.reduce(4)).convert("L")).mean[0]


async def test_the_page_is_drawn_as_pdfium_draws_it(renderer: DocumentRenderer) -> None:
    data = text_heavy_pdf(pages=2)
    first, second = (pixels(p) for p in await render_all(renderer, data))
    # pdfium's own render at the same scale (its size rounds up to 792x1024: cropped).
    reference = pdfium.PdfDocument(data)[0].render(scale=1024 / 792).to_pil().convert("RGB")
    reference = reference.crop((0, 0, *first.size))
    assert 255 - ImageStat.Stat(first.convert("L")).mean[0] > 10  # text-heavy, not blank
    assert difference(first, reference) < 3  # measured 1.8
    assert difference(second, reference) > 6  # another page of the same kind: measured 8.6


@pytest.mark.parametrize(("rotate", "size", "corner"), [
    (0, (791, 1024), "top-left"),
    (90, (1024, 791), "top-right"),  # /Rotate turns the page clockwise
    (180, (791, 1024), "bottom-right"),
    (270, (1024, 791), "bottom-left"),
])  # fmt: skip
async def test_page_rotate_is_respected(
    renderer: DocumentRenderer, rotate: int, size: tuple[int, int], corner: str
) -> None:
    [page] = await render_all(renderer, make_pdf([Page(*LETTER, rotate=rotate, mark=True)]))
    image = pixels(page)
    assert image.size == size
    w, h = size
    m = 30  # the 40-point mark is ~51 pixels at this scale
    corners = {
        "top-left": (0, 0, m, m),
        "top-right": (w - m, 0, w, m),
        "bottom-left": (0, h - m, m, h),
        "bottom-right": (w - m, h - m, w, h),
    }
    assert [name for name, box in corners.items() if dark(image, box)] == [corner]


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "message"), [
    (encrypted_pdf(), "the PDF is encrypted and needs a password: send it without password "
                      "protection"),
    (corrupt_pdf(), "the PDF could not be read: it is damaged or not a PDF"),
    (make_pdf([text_page(["x"])])[:200], "the PDF could not be read: it is damaged or not a PDF"),
    (zero_page_pdf(), "the PDF has no pages"),
    (b"GIF89a" + b"\x00" * 40, "image data could not be read as image/gif"),
    (b"\x00\x01", "unsupported document type: an unknown type; send a PDF, a TIFF (one page per "
                  "frame) or a PNG, JPEG, WebP, GIF or BMP image"),
])  # fmt: skip
async def test_refused_documents(renderer: DocumentRenderer, data: bytes, message: str) -> None:
    with pytest.raises(DocumentRejected) as caught:
        await renderer.open(data)
    assert (caught.value.message, caught.value.status) == (message, 400)
    assert os.listdir(renderer._dir) == []  # nothing left behind


async def test_image_headers_get_the_image_paths_limits(renderer: DocumentRenderer) -> None:
    png = encode(Image.new("RGB", (20, 10), "white"), "PNG")
    chunk = struct.pack(">I", 0) + b"tEXt" + struct.pack(">I", zlib.crc32(b"tEXt"))
    flood = png[:33] + chunk * 40_000 + png[33:]  # after the signature and IHDR
    with pytest.raises(DocumentRejected, match="PNG has more than 32,768 chunks"):
        await renderer.open(flood)


async def test_refusals_do_not_depend_on_what_a_worker_saw_before() -> None:
    # pdfium keeps its last error: after an encrypted PDF, an empty one reported "password".
    one = DocumentRenderer(workers=1, max_side=1024)
    try:
        for data, message in [
            (encrypted_pdf(), "the PDF is encrypted"),
            (zero_page_pdf(), "the PDF has no pages"),
            (encrypted_pdf(), "the PDF is encrypted"),
            (corrupt_pdf(), "the PDF could not be read"),
            (zero_page_pdf(), "the PDF has no pages"),
        ]:
            with pytest.raises(DocumentRejected, match=message):
                await one.open(data)
    finally:
        await one.aclose()


async def test_a_pdf_that_only_restricts_permissions_opens(renderer: DocumentRenderer) -> None:
    [page] = await render_all(renderer, encrypted_pdf(user_password=""))
    assert (page.image.width, page.image.height) == (791, 1024)
    darkest = pixels(page).crop((40, 40, 200, 70)).convert("L").getextrema()[0]
    assert isinstance(darkest, int) and darkest < 100  # "Secret page." is drawn


async def test_an_extreme_page_is_refused_by_its_number(renderer: DocumentRenderer) -> None:
    doc = await renderer.open(make_pdf([Page(*LETTER), Page(2, 500)]))
    try:
        assert (await renderer.render(doc, 0)).image.width == 791
        with pytest.raises(DocumentRejected, match="page 1 is 2x500 points; the model accepts"):
            await renderer.render(doc, 1)
        with pytest.raises(DocumentRejected, match="page 2 is out of range"):
            await renderer.render(doc, 2)
    finally:
        await renderer.close(doc)


async def test_too_many_pixels_in_any_tiff_frame_is_413() -> None:
    small = DocumentRenderer(workers=1, max_side=1024, max_pixels=100_000)
    try:
        with pytest.raises(DocumentRejected) as caught:
            await small.open(multipage_tiff([(100, 100), (400, 300)]))
    finally:
        await small.aclose()
    assert caught.value.status == 413
    assert caught.value.message == "image is 400x300 pixels, the limit is 100,000 pixels"


# --- images and TIFF frames -------------------------------------------------------------------


async def test_tiff_frames_are_pages(renderer: DocumentRenderer) -> None:
    pages = await render_all(renderer, multipage_tiff([(600, 800), (800, 600), (30, 20)]))
    assert [(p.image.width, p.image.height) for p in pages] == [(768, 1024), (1024, 768),
                                                                (1024, 682)]  # fmt: skip
    # Each page is its own frame: the frames are 250, 220 and 190 grey, marked top-left.
    for page, shade in zip(pages, (250, 220, 190), strict=True):
        image = pixels(page)
        assert image.getpixel((image.width // 2, image.height // 2)) == (shade,) * 3
        assert dark(image, (0, 0, 20, 20))


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


async def test_image_documents_are_one_page_made_upright_flat_and_sized(
    renderer: DocumentRenderer,
) -> None:
    transparent = Image.new("RGBA", (300, 400), (0, 0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to display
    sideways = Image.new("RGB", (400, 300), "white")
    sideways.paste((0, 0, 0), (0, 0, 40, 40))  # top-left as stored -> top-right upright
    cmyk = Image.new("CMYK", (200, 100), (0, 0, 0, 0))  # no ink: white
    [flat] = await render_all(renderer, encode(transparent, "PNG"))
    [upright] = await render_all(renderer, encode(sideways, "JPEG", exif=exif.tobytes()))
    [converted] = await render_all(renderer, encode(cmyk, "JPEG"))
    assert (flat.image.width, flat.image.height) == (768, 1024)
    assert pixels(flat).getpixel((10, 10)) == (255, 255, 255)  # alpha on white, not black
    assert (upright.image.width, upright.image.height) == (768, 1024)
    image = pixels(upright)
    assert dark(image, (700, 0, 768, 60)) and not dark(image, (0, 0, 60, 60))
    assert (converted.image.width, converted.image.height) == (1024, 512)
    assert min(pixels(converted).getpixel((512, 256))) > 245
    assert (flat.dpi, upright.dpi, converted.dpi) == (184, 184, 369)  # 72 x the scale


# --- the pool ---------------------------------------------------------------------------------


async def test_a_cancelled_render_leaves_no_work_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    one = DocumentRenderer(workers=1, max_side=1024)
    submitted: list[tuple[Future[Any], tuple[Any, ...]]] = []
    for worker in one._pool._procs:
        real_submit = worker.executor.submit

        def spy(fn: Any, *args: Any, real_submit: Any = real_submit) -> Future[Any]:
            future = real_submit(fn, *args)
            submitted.append((future, args))
            return future

        monkeypatch.setattr(worker.executor, "submit", spy)
    try:
        doc = await one.open(text_heavy_pdf(pages=12))
        submitted.clear()  # the workers' start and the page count
        tasks = [asyncio.create_task(one.render(doc, i)) for i in range(12)]
        await asyncio.sleep(0)  # every render is waiting for its turn or has its worker
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A page goes to a worker only when one is free, a document alone holding at most
        # RENDER_WORKERS (here 1) of them: the other pages never left the gateway.
        assert len(submitted) == 1
        # A page is a small message: the document travels by path, never as bytes.
        assert all(not isinstance(a, bytes | bytearray) for _, args in submitted for a in args)
        assert (await one.render(doc, 11)).index == 11  # the pool is still fine
        assert one.flows == 0
    finally:
        await one.aclose()


async def test_a_dead_worker_is_replaced_and_the_page_rendered() -> None:
    one = DocumentRenderer(workers=1, max_side=1024)
    try:
        doc = await one.open(make_pdf([text_page([filler(50)]), text_page([filler(60, 1)])]))
        assert (await one.render(doc, 0)).index == 0
        for pid in one.worker_pids():
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.5)  # the pool notices and breaks
        assert (await one.render(doc, 1)).index == 1
    finally:
        await one.aclose()


async def test_a_page_over_its_cpu_budget_fails_alone() -> None:
    budget = DocumentRenderer(workers=2, max_side=1024, page_cpu_seconds=0.3)
    try:
        slow = await budget.open(slow_pdf())  # opening is cheap: only drawing is slow
        fine = await budget.open(text_heavy_pdf(pages=4))
        results = await asyncio.gather(
            budget.render(slow, 0),
            *(budget.render(fine, i) for i in range(4)),
            return_exceptions=True,
        )
        failed, *rendered = results
        assert isinstance(failed, DocumentRejected)
        assert failed.message == (
            "page 0 could not be rendered: it needs more than 0.3 s of CPU or stops the renderer"
        )
        # No other page ran in the killed worker: every one came back, none was retried.
        assert [p.index for p in rendered if isinstance(p, RenderedPage)] == [0, 1, 2, 3]
        assert (await budget.render(fine, 3)).index == 3  # and the pool goes on
    finally:
        await budget.aclose()


async def test_close_and_aclose_remove_the_files() -> None:
    one = DocumentRenderer(workers=1, max_side=1024)
    exists = partial(asyncio.to_thread, os.path.exists)
    doc: OpenDocument = await one.open(make_pdf([Page(*LETTER)]))
    assert await exists(doc.path) and doc.kind == "pdf" and doc.num_pages == 1
    await one.close(doc)
    assert not await exists(doc.path)
    with pytest.raises(ValueError, match="is closed"):
        await one.render(doc, 0)
    kept = await one.open(make_pdf([Page(*LETTER)]))
    await one.aclose()
    assert not await exists(kept.path) and not await exists(one._dir)


async def test_an_empty_pdf_after_an_encrypted_one_is_still_called_empty() -> None:
    # pdfium leaves its last error unset for an empty page tree: the code read then is the
    # previous document's ("password"), so the order of the checks matters.
    renderer = DocumentRenderer(1, 1024)
    try:
        for data, message in ((encrypted_pdf(), "password"), (zero_page_pdf(), "no pages")):
            with pytest.raises(DocumentRejected, match=message):
                await renderer.open(data)
    finally:
        await renderer.aclose()


LOG_LINE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} "


@pytest.mark.parametrize("debug", [True, False])
async def test_an_xfa_form_is_one_debug_line_not_pdfiums_advice(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], debug: bool
) -> None:
    """pypdfium2 printed two bare lines (advice to rebuild it) to stderr per worker that
    opened the PDF; the gateway's log has its own lines only."""
    monkeypatch.setenv("DEBUG", "true" if debug else "false")
    monkeypatch.setenv("LOG_FORMAT", "text")
    rendering = DocumentRenderer(workers=2, max_side=1024, tmp_dir=str(tmp_path))
    try:
        pages = await render_all(rendering, xfa_pdf())
        again = await render_all(rendering, xfa_pdf())
    finally:
        await rendering.aclose()
    assert [p.image.width for p in pages + again] == [791, 791]
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    expected = (
        "DEBUG ocrflux.documents [-] the PDF has an XFA form (dynamic); pdfium draws its "
        "AcroForm fields only"
    )
    if debug:
        assert len(lines) == 2, lines  # one per document
        for line in lines:
            assert re.fullmatch(LOG_LINE + re.escape(expected), line), line
    else:
        assert lines == []

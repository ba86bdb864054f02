"""Real OCR of rendered pages: character accuracy and the Markdown structure."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw

from ocrflux.engines.local.errors import UnreadableImage
from ocrflux.engines.local.ocr import Recogniser
from ocrflux.engines.local.reader import MAX_SIDE, read_page, to_gray
from tests.documents.pdfs import Page as PdfPage
from tests.documents.pdfs import filler, make_pdf
from tests.engines.local.conftest import Reading
from tests.engines.local.pages import (
    CHECKLIST,
    TABLE,
    TABLE_TITLE,
    UNRULED,
    ZH_CHECKLIST,
    ZH_TABLE,
    accuracy,
    tables,
)

Read = Callable[[str], Reading]


@pytest.mark.parametrize(
    ("name", "floor"),
    [
        ("english_form", 0.98),
        ("two_columns", 0.98),
        ("chinese_form", 0.95),
        ("english_form_noisy", 0.90),
    ],
)
def test_character_accuracy(reading: Read, name: str, floor: float) -> None:
    page, result = reading(name)
    score = accuracy(page.text, result.markdown, cjk=page.language == "zh")
    assert score >= floor, result.markdown
    assert result.primary_language == page.language
    assert result.lines > 0 and result.characters >= 0.9 * len("".join(page.text.split()))


def line_with(markdown: str, text: str) -> str:
    found = [line for line in markdown.splitlines() if text in line]
    assert len(found) == 1, (text, markdown)
    return found[0]


@pytest.mark.parametrize("name", ["english_form", "english_form_noisy"])
def test_english_structure(reading: Read, name: str) -> None:
    _, result = reading(name)
    md = result.markdown
    blocks = md.split("\n\n")
    assert blocks[0] == "# Site Safety Inspection"
    assert "# Checklist" in blocks
    paragraph = next(b for b in blocks if b.startswith("The inspector"))
    assert "\n" not in paragraph  # one paragraph from three wrapped lines
    for _state, label, mark in CHECKLIST:
        assert line_with(md, label) == f"{mark} {label}"
    checklist = next(b for b in blocks if CHECKLIST[0][1] in b)
    assert len(checklist.splitlines()) == len(CHECKLIST)  # one block, one item per line
    assert line_with(md, "Weather") == "Weather: [√] Dry [ ] Wet [ ] Windy"
    assert not any(line.startswith("# ") for line in md.splitlines()[1:] if "Checklist" not in line)


@pytest.mark.parametrize("name", ["english_form", "english_form_noisy"])
def test_english_ruled_table(reading: Read, name: str) -> None:
    _, result = reading(name)
    [table] = tables(result.markdown)
    assert table[0] == [(TABLE_TITLE, 1, 3)]  # the title row's merged cell
    assert [[text for text, _, _ in row] for row in table[1:]] == TABLE
    assert all((rs, cs) == (1, 1) for row in table[1:] for _, rs, cs in row)
    # The table sits between the checkbox group and the closing line.
    md = result.markdown
    assert md.index("Weather") < md.index("<table>") < md.index("Signed by")


def test_chinese_structure_and_table(reading: Read) -> None:
    _, result = reading("chinese_form")
    md = result.markdown
    assert md.split("\n\n")[0] == "# 现场安全检查记录"
    for _state, label, mark in ZH_CHECKLIST:
        assert line_with(md, label) == f"{mark} {label}"
    assert re.fullmatch(r"天气[：:] ?\[√\] 晴 \[ \] 雨", line_with(md, "天气"))
    [table] = tables(md)
    assert [[text for text, _, _ in row] for row in table] == ZH_TABLE
    assert sum(1 for line in md.splitlines() if line.startswith("# ")) == 1


def test_two_columns_are_read_one_after_the_other(reading: Read) -> None:
    _, result = reading("two_columns")
    blocks = result.markdown.split("\n\n")
    assert blocks[0] == "# Quarterly Report"
    assert [b[:20] for b in blocks[1:3]] == ["Sales grew in every ", "Staff turnover fell "]
    assert blocks[1].endswith("with the old ones.") and blocks[2].endswith("first six months.")


def test_columns_of_figures_without_rules_become_a_table(reading: Read) -> None:
    _, result = reading("two_columns")
    last = result.markdown.split("\n\n")[-1]
    [table] = tables(last)
    assert [[text for text, _, _ in row] for row in table] == UNRULED


def test_an_empty_page_reads_as_empty_text(reading: Read) -> None:
    _, result = reading("empty")
    assert result.markdown == ""
    assert (result.characters, result.lines, result.primary_language) == (0, 0, None)
    assert result.seconds > 0


def test_not_an_image_is_refused(recogniser: Recogniser) -> None:
    with pytest.raises(UnreadableImage):
        read_page(b"%PDF-1.7 not a picture", recogniser)


def test_images_arrive_as_bytes_pil_or_arrays(reading: Read) -> None:
    page, _ = reading("english_form")
    from_bytes = to_gray(page.png())
    assert (to_gray(page.image) == from_bytes).all()
    bgr = np.asarray(page.image)[..., ::-1]
    assert abs(to_gray(bgr).astype(int) - from_bytes).max() <= 1


def test_transparent_and_sixteen_bit_pages_keep_their_ink() -> None:
    clear = Image.new("RGBA", (200, 100), (0, 0, 0, 0))  # transparent black: paper
    ImageDraw.Draw(clear).rectangle((50, 40, 150, 60), fill=(0, 0, 0, 255))
    gray = to_gray(clear)
    assert gray[10, 10] == 255 and gray[50, 100] == 0
    deep = Image.fromarray(np.full((100, 200), 60000, np.uint16))
    ImageDraw.Draw(deep).rectangle((50, 40, 150, 60), fill=1000)
    gray = to_gray(deep)
    assert gray[10, 10] > 200 and gray[50, 100] < 20


def test_large_pages_are_scaled_to_the_working_size() -> None:
    big = Image.new("L", (3000, 6000), 255)
    out = io.BytesIO()
    big.save(out, "JPEG")
    assert max(to_gray(out.getvalue()).shape) == MAX_SIDE


@pytest.mark.parametrize("side", [1024, 1600])
def test_a_pdf_page_of_small_print_reads_upright(recogniser: Recogniser, side: int) -> None:
    """Full-width lines of 10 pt Helvetica drawn by pdfium (as the gateway renders a PDF):
    rapidocr's direction classifier took such lines for upside down and read them as noise."""
    paragraphs = (
        "Revenue grew by twelve percent in the third quarter, driven by strong sales of the "
        "new product line across all regions.",
        filler(40, seed=3),
    )
    document = pdfium.PdfDocument(make_pdf([PdfPage(blocks=paragraphs)]))
    try:
        page = document[0]
        image = page.render(scale=side / max(page.get_size())).to_pil()
    finally:
        document.close()
    assert accuracy(" ".join(paragraphs), read_page(image, recogniser).markdown) >= 0.98

"""What must not become Markdown structure (issue 19): footers, sentence tails, rotated stamps
and chart labels are never `#` headings; figure thumbnails and chart frames are never
checkboxes. Synthetic layouts: items with boxes and a painted ink mask, no OCR."""

from __future__ import annotations

import numpy as np

from ocrflux.engines.local.blocks import to_blocks
from ocrflux.engines.local.checkboxes import Checkbox
from ocrflux.engines.local.geometry import Box, TextLine, Word
from ocrflux.engines.local.markdown import compose
from ocrflux.engines.local.reading_order import Item, reading_order

PAGE = (1000, 800)  # height, width
BODY, LARGE = 8, 16  # x-height of body text and of text that measures large, px


def item(text: str, x0: float, y0: float, x1: float, height: float = 16) -> Item:
    words, x = [], x0
    step = (x1 - x0) / max(1, len(text.split()))
    for k, piece in enumerate(text.split()):
        words.append(Word(piece, Box(x, y0, x + step - 6, y0 + height), k > 0))
        x += step
    return Item(Box(x0, y0, x1, y0 + height), tuple(words))


def paint(ink: np.ndarray, it: Item, size: int) -> None:
    """Ink for an item: a band of `size` px in the middle of its box (its dense band)."""
    b = it.box
    mid = int(b.cy)
    ink[mid - size // 2 : mid - size // 2 + size, int(b.x0) : int(b.x1)] = 255


def blocks(sized: list[tuple[Item, int]]) -> list[str]:
    ink = np.zeros(PAGE, np.uint8)
    for it, size in sized:
        paint(ink, it, size)
    return to_blocks(reading_order([it for it, _ in sized], PAGE[1]), ink)


def body(y0: float, n: int, last: str = "") -> list[tuple[Item, int]]:
    rows = [
        (item(f"body text line number {k} of a paragraph here", 60, y0 + 18 * k, 740), BODY)
        for k in range(n)
    ]
    if last:
        rows.append((item(last, 60, y0 + 18 * n, 200), LARGE))
    return rows


def test_a_large_isolated_title_is_still_a_heading() -> None:
    title = item("Hyper Parameter Optimization", 60, 40, 400, height=30)
    out = blocks([(title, LARGE), *body(100, 6)])
    assert out[0] == "# Hyper Parameter Optimization"


def test_a_sentence_tail_measured_large_is_not_a_heading() -> None:
    # "CPU @2.45 GHz." ends a paragraph; its capitals and digits measure as large text.
    out = blocks(body(100, 6, last="CPU @2.45 GHz."))
    assert not any(b.startswith("#") for b in out), out
    assert out[0].endswith("here CPU @2.45 GHz.")


def test_a_footer_is_not_a_heading() -> None:
    footer = item("Chapter 7 Hardware", 60, 960, 300, height=22)
    out = blocks([*body(100, 6), (footer, LARGE)])
    assert out[-1] == "Chapter 7 Hardware"


def test_a_rotated_margin_stamp_is_not_a_heading() -> None:
    stamp = Item(Box(760, 300, 784, 600), (Word("CONFIDENTIAL", Box(760, 300, 784, 600), False),))
    out = blocks([*body(100, 6), (stamp, 20)])
    assert "CONFIDENTIAL" in out and not any(b.startswith("#") for b in out), out


def test_chart_axis_labels_are_not_headings() -> None:
    ticks = [(item(f"{v}", 100, 400 + 30 * k, 120), LARGE) for k, v in enumerate((30, 20, 10))]
    tilted = [
        (Item(Box(x, 520, x + 60, 580), (Word(w, Box(x, 520, x + 60, 580), False),)), LARGE)
        for x, w in ((140, "residential"), (220, "commercial"), (300, "woodlot"))
    ]
    out = blocks([*body(100, 6), *ticks, *tilted])
    assert not any(b.startswith("#") for b in out), out


def line(text: str, x0: float, y0: float, x1: float, height: float = 16) -> TextLine:
    quad = ((x0, y0), (x1, y0), (x1, y0 + height), (x0, y0 + height))
    return TextLine(text, quad, 0.99, (Word(text, Box(x0, y0, x1, y0 + height), False),))


def test_a_figure_thumbnail_is_not_a_checkbox() -> None:
    lines = [line(f"body text line {k} of the page", 60, 100 + 18 * k, 700) for k in range(6)]
    thumbnail = Checkbox(Box(100, 300, 148, 348), True)  # a 48 px framed figure, 3 lines high
    checkbox = Checkbox(Box(60, 400, 74, 414), True)
    lines.append(line("Agreed", 84, 399, 160))
    ink = np.zeros(PAGE, np.uint8)
    markdown = compose(lines, [thumbnail, checkbox], [], ink)
    assert markdown.count("[√]") == 1 and "[√] Agreed" in markdown, markdown

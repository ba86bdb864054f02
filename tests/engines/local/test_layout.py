"""Reading order and blocks over synthetic items (no OCR, no pixels)."""

from __future__ import annotations

import numpy as np

from ocrflux.engines.local.blocks import join_lines, to_blocks
from ocrflux.engines.local.geometry import Box, Word
from ocrflux.engines.local.reading_order import Item, reading_order


def item(text: str, x0: float, y0: float, x1: float, height: float = 30) -> Item:
    words, x = [], x0
    step = (x1 - x0) / max(1, len(text.split()))
    for k, piece in enumerate(text.split()):
        words.append(Word(piece, Box(x, y0, x + step - 8, y0 + height), k > 0))
        x += step
    return Item(Box(x0, y0, x1, y0 + height), tuple(words))


def texts(items: list[Item], width: float = 1000) -> list[list[str]]:
    return [[i.text for i in row.items] for row in reading_order(items, width)]


def test_two_columns_are_read_left_then_right() -> None:
    items = [item("Title spanning both columns", 60, 40, 900, 50)]
    for k in range(4):
        y = 120 + 40 * k
        items += [
            item(f"left line {k} of prose", 60, y, 460),
            item(f"right {k} prose", 540, y, 940),
        ]
    order = [t for row in texts(items) for t in row]
    assert order[0].startswith("Title")
    assert order[1:5] == [f"left line {k} of prose" for k in range(4)]
    assert order[5:] == [f"right {k} prose" for k in range(4)]


def test_label_value_rows_stay_rows() -> None:
    items = []
    for k, (label, value) in enumerate([("Name:", "John Smith"), ("Date:", "2024-05-01")]):
        items += [item(label, 60, 100 + 40 * k, 160), item(value, 400, 100 + 40 * k, 560)]
    assert texts(items) == [["Name:", "John Smith"], ["Date:", "2024-05-01"]]


def test_lines_tilted_a_few_degrees_stay_apart() -> None:
    # 3 degrees over 800 px is 42 px of drift: boxes of neighbouring lines overlap.
    items = []
    for k in range(3):
        y = 100 + 36 * k
        items.append(
            Item(
                Box(60, y - 2, 860, y + 42 + 30),
                (Word(f"line{k}", Box(60, y + 42, 860, y + 72), False),),
            )
        )
    rows = reading_order(items, 1000)
    assert len(rows) == 3 and [r.items[0].text for r in rows] == ["line0", "line1", "line2"]


def test_blocks_join_wrapped_lines_and_split_paragraphs() -> None:
    ink = np.zeros((600, 1000), np.uint8)
    items = [
        item("first line of a paragraph that wraps", 60, 100, 900),
        item("onto this shorter line.", 60, 134, 400),
        item("A new paragraph after a gap.", 60, 220, 500),
        Item(Box(60, 300, 82, 322), mark="[√]"),
        item("Done", 96, 296, 160),
        Item(Box(60, 340, 82, 362), mark="[ ]"),
        item("Not done", 96, 336, 200),
    ]
    blocks = to_blocks(reading_order(items, 1000), ink)
    assert blocks == [
        "first line of a paragraph that wraps onto this shorter line.",
        "A new paragraph after a gap.",
        "[√] Done\n[ ] Not done",
    ]


def test_join_lines() -> None:
    assert join_lines("检查人员走遍了整个现场，", "并记录了") == "检查人员走遍了整个现场，并记录了"
    assert join_lines("an inspec-", "tion report") == "an inspection report"
    assert join_lines("well-", "Known") == "well- Known"
    assert join_lines("end.", "Next") == "end. Next"


def test_nothing_on_the_page_is_no_blocks() -> None:
    assert to_blocks(reading_order([], 1000), np.zeros((10, 10), np.uint8)) == []


def test_two_columns_with_a_narrow_gutter_are_read_column_by_column() -> None:
    # A handbook page at 1024 px: justified lines 16 px high, the columns 7 px apart (less than
    # half a line height), with short last lines and subheadings in either column.
    left = [f"left column line {k} of the running text" for k in range(10)]
    right = [f"right column line {k} of the running text" for k in range(10)]
    items = []
    for k in range(10):
        y = 60 + 17 * k
        items.append(item(left[k], 92, y, 413 if k != 4 else 220, height=16))
        items.append(item(right[k], 420, y, 741 if k != 6 else 600, height=16))
    order = [t for row in texts(items, width=786) for t in row]
    assert order == left + right

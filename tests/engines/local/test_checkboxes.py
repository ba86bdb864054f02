"""Checkboxes from pixels alone (no OCR): states, glyph boxes, and squares that are letters."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ocrflux.engines.local.checkboxes import erase, find_checkboxes
from tests.engines.local.pages import CJK, SANS, Sheet, font


def gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"))


def test_drawn_boxes_ticked_crossed_and_empty() -> None:
    sheet = Sheet((600, 300))
    body = font(SANS, 24)
    for k, state in enumerate(["tick", "cross", "empty"]):
        sheet.checkbox_item((40, 40 + 60 * k), state, f"Item {k}", body)
    found = find_checkboxes(gray(sheet.image))
    assert [c.mark for c in found] == ["[√]", "[√]", "[ ]"]
    assert all(35 <= c.box.x0 <= 45 and 20 <= c.box.width <= 26 for c in found)


def test_font_glyph_boxes_on_one_line() -> None:
    sheet = Sheet((600, 120))
    sheet.draw.text((40, 40), "Size: \u2610 S \u2611 M \u2612 L", font=font(SANS, 24), fill=0)
    found = find_checkboxes(gray(sheet.image))
    assert [c.mark for c in found] == ["[ ]", "[√]", "[√]"]
    assert [c.box.x0 for c in found] == sorted(c.box.x0 for c in found)


def test_square_cjk_characters_are_not_checkboxes() -> None:
    sheet = Sheet((700, 200))
    sheet.text((40, 40), "出口和入口都很清楚，人口日期田野", font(CJK, 26))
    sheet.text((40, 110), "口径 目录", font(CJK, 26))
    assert find_checkboxes(gray(sheet.image)) == []


def test_letters_and_table_cells_are_not_checkboxes() -> None:
    sheet = Sheet((700, 300))
    sheet.text((40, 30), "DOOR O 0 D [x] []", font(SANS, 26))
    sheet.table((40, 100), [30, 30, 30], 30, [["", "", ""], ["", "", ""]], font(SANS, 20))
    assert find_checkboxes(gray(sheet.image)) == []


def test_a_blank_page_has_none_and_erase_whitens_the_boxes() -> None:
    assert find_checkboxes(np.full((300, 300), 255, np.uint8)) == []
    sheet = Sheet((300, 100))
    sheet.checkbox((40, 40), 22, "tick")
    page = gray(sheet.image)
    cleaned = erase(page, find_checkboxes(page))
    assert page.min() < 100 and cleaned.min() == 255

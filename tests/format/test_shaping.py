"""Output shaping: format inference, checkbox normalisation, Markdown lists, whole answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocrflux.format.page import PageResponse, parse_page_response
from ocrflux.format.shaping import (
    infer_output_format,
    shape_pages,
    to_markdown_list,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "pages"


def page(text: str | None, language: str | None = "en") -> PageResponse:
    return PageResponse(language, True, 0, False, False, text)


# --- format inference ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "fmt"),
    [
        (None, "markdown"),
        ("", "markdown"),
        ("You are an OCR assistant. Return Markdown.", "markdown"),
        ("请将图片内容识别为 Markdown 列表格式，勾选框用 [√] 表示", "list"),
        ("请输出清单", "list"),
        ("Answer as a bulleted list.", "list"),
        ("Use bullet points.", "list"),
        ("Produce a CHECKLIST of the form", "list"),
        ("Return JSON.", "json"),
        ("以json格式输出", "json"),
        ("Return a JSON list of fields", "json"),  # json wins over list
        ("Enlist the help of no one; return markdown", "markdown"),  # 'list' must be a word
        ("Listing of items", "markdown"),
    ],
)
def test_infer_output_format(prompt: str | None, fmt: str) -> None:
    assert infer_output_format(prompt) == fmt


# --- Markdown list ------------------------------------------------------------------------------


def test_nested_headings_nest_their_content() -> None:
    markdown = (
        "# Report\n\nIntro line\n\n## Part A\n\nA text\n\n### Detail\n\nDeep\n\n"
        "## Part B\n\nB text\n\n# Appendix\n\nEnd"
    )
    assert to_markdown_list(markdown) == (
        "- Report\n  - Intro line\n  - Part A\n    - A text\n    - Detail\n      - Deep\n"
        "  - Part B\n    - B text\n- Appendix\n  - End"
    )


def test_existing_lists_keep_nesting_under_their_heading() -> None:
    markdown = (
        "# Tasks\n\n* one\n  + one.a\n    - one.a.i\n* two\n\n1. first\n2. second\n"
        "   - under second\n\nafter"
    )
    assert to_markdown_list(markdown) == (
        "- Tasks\n  - one\n    - one.a\n      - one.a.i\n  - two\n  1. first\n  2. second\n"
        "     - under second\n  - after"
    )


def test_checkbox_items_and_paragraphs_become_items() -> None:
    markdown = "Text before any heading\n\n# 表单\n\n[√] 同意\n[ ] 不同意\n\n- [√] task"
    assert to_markdown_list(markdown) == (
        "- Text before any heading\n- 表单\n  - [√] 同意\n  - [ ] 不同意\n  - [√] task"
    )


def test_table_rows_become_items_with_cells_joined() -> None:
    markdown = (
        "# 表\n\n<table><tr><th>名称</th><th>数量</th></tr>"
        '<tr><td rowspan="2">苹果 &amp; 梨</td><td>1<br/>箱</td></tr><tr><td></td></tr></table>'
        "\n\n| a | b |\n|---|:-:|\n| 1 | 2 |"
    )
    assert to_markdown_list(markdown) == (
        "- 表\n  - 名称 | 数量\n  - 苹果 & 梨 | 1 箱\n  - a | b\n  - 1 | 2"
    )


def test_heading_text_that_looks_like_a_marker_is_escaped() -> None:
    assert to_markdown_list("# 1. Introduction\n\nBody") == "- 1\\. Introduction\n  - Body"


def test_horizontal_rules_and_blank_input_vanish() -> None:
    assert to_markdown_list("a\n\n---\n\nb") == "- a\n- b"
    assert to_markdown_list("") == ""


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("#- *1.|<>tabler/d \n中[√]"), max_size=80))
def test_list_output_is_only_list_items(markdown: str) -> None:
    result = to_markdown_list(markdown)
    for line in result.splitlines():
        stripped = line.lstrip(" ")
        assert stripped.startswith("- ") or stripped[: stripped.find(" ")].rstrip(".)").isdigit()


# --- whole answers ------------------------------------------------------------------------------


def test_pages_are_joined_in_order_with_a_blank_line() -> None:
    pages: list[PageResponse | str] = [page("# One\n\nfirst"), "raw fallback ☐", page("☑ third")]
    assert shape_pages(pages, "markdown", keep_image_placeholders=False) == (
        "# One\n\nfirst\n\nraw fallback ☐\n\n[√] third"
    )
    assert shape_pages(pages, "list", keep_image_placeholders=False) == (
        "- One\n  - first\n\nraw fallback ☐\n\n- [√] third"
    )


def test_empty_pages_do_not_leave_gaps() -> None:
    pages: list[PageResponse | str] = [page("a"), page(None), page("<Image>(1,1),(2,2)</Image>")]
    assert shape_pages(pages, "markdown", keep_image_placeholders=False) == "a"
    kept = shape_pages(pages, "markdown", keep_image_placeholders=True)
    assert kept == "a\n\n<Image>(1,1),(2,2)</Image>"


def test_json_has_one_object_per_page_and_marks_fallbacks() -> None:
    pages: list[PageResponse | str] = [page("☑ 是", "zh"), "{broken"]
    decoded = orjson.loads(shape_pages(pages, "json", keep_image_placeholders=False))
    assert decoded == [
        {
            "page": 1,
            "fallback": False,
            "primary_language": "zh",
            "is_rotation_valid": True,
            "rotation_correction": 0,
            "is_table": False,
            "is_diagram": False,
            "natural_text": "[√] 是",
        },
        {
            "page": 2,
            "fallback": True,
            "primary_language": None,
            "is_rotation_valid": None,
            "rotation_correction": None,
            "is_table": None,
            "is_diagram": None,
            "natural_text": "{broken",
        },
    ]


def load_fixtures() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(FIXTURES.glob("*.json"))]


def test_fixture_set_is_complete() -> None:
    names = {fixture["name"] for fixture in load_fixtures()}
    assert names >= {
        "english_page",
        "chinese_page",
        "table_spans",
        "form_checkboxes",
        "rotated_page",
        "invalid_json",
        "seed_form_zh",
    }


@pytest.mark.parametrize("fixture", load_fixtures(), ids=lambda fixture: fixture["name"])
def test_fixture_outputs(fixture: dict[str, Any]) -> None:
    decoded = parse_page_response(fixture["answer"])
    expected_page = fixture["page_response"]
    assert (decoded.to_dict() if decoded else None) == expected_page
    pages: list[PageResponse | str] = [decoded if decoded else fixture["answer"]]
    for fmt in ("markdown", "list"):
        got = shape_pages(pages, fmt, keep_image_placeholders=False)
        assert got == fixture["expected"][fmt], fmt
    got_json = orjson.loads(shape_pages(pages, "json", keep_image_placeholders=False))
    assert got_json == fixture["expected"]["json"]


def test_seed_fixture_prompt_asks_for_a_checkbox_list() -> None:
    seed = json.loads((FIXTURES / "seed_form_zh.json").read_text())
    assert infer_output_format(seed["system_prompt"]) == seed["expected_format"] == "list"
    items = seed["expected"]["list"].splitlines()
    assert all(line.lstrip().startswith("- ") for line in items)
    assert any("[√]" in line for line in items) and any("[ ]" in line for line in items)

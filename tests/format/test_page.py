"""OCRFlux page protocol: prompts, page-response decoding, matrix tables and page rendering."""

from __future__ import annotations

import json

import pytest

from ocrflux.format.page import (
    PageResponse,
    TableFormatError,
    build_element_merge_detect_prompt,
    build_html_table_merge_prompt,
    build_page_prompt,
    convert_table,
    html_to_matrix,
    matrix_to_html,
    parse_page_response,
    render_page,
    table_rows,
    table_spans,
)

# Copied from chatdoc-com/OCRFlux ocrflux/prompts.py (build_page_to_markdown_prompt), one line
# per source line, so any drift in our copy shows up byte for byte.
TOOLKIT_PAGE_PROMPT = (
    "Below is the image of one page of a document. "
    "Just return the plain text representation of this document as if you were reading it naturally.\n"  # noqa: E501
    "ALL tables should be presented in HTML format.\n"
    'If there are images or figures in the page, present them as "<Image>(left,top),(right,bottom)</Image>", (left,top,right,bottom) are the coordinates of the top-left and bottom-right corners of the image or figure.\n'  # noqa: E501
    "Present all titles and headings as H1 headings.\n"
    "Do not hallucinate.\n"
)


def page(text: str | None, **fields: object) -> PageResponse:
    values: dict[str, object] = {
        "primary_language": "en",
        "is_rotation_valid": True,
        "rotation_correction": 0,
        "is_table": False,
        "is_diagram": False,
        "natural_text": text,
    }
    values.update(fields)
    return PageResponse(**values)  # type: ignore[arg-type]


def answer(**overrides: object) -> str:
    return json.dumps({**page("hello").to_dict(), **overrides}, ensure_ascii=False)


# --- prompts ------------------------------------------------------------------------------------


def test_page_prompt_is_byte_identical_to_the_toolkit() -> None:
    assert build_page_prompt().encode() == TOOLKIT_PAGE_PROMPT.encode()


def test_element_merge_detect_prompt_numbers_elements_of_both_pages() -> None:
    prompt = build_element_merge_detect_prompt(["a", "b"], ["c"])
    assert prompt == (
        "Below are two consecutive pages in Markdown format, where each element of them is "
        "numbered. Identify pairs of elements which should be merged across the two pages, such "
        "as text paragraphs or tables that span across the two pages. Return pairs as "
        "[(element_index_of_page1, element_index_of_page2), ...] or [] if no elements should be "
        "merged.\nPrevious page:\n0. a\n\n1. b\n\nNext page:\n0. c\n\n"
    )


def test_html_table_merge_prompt_carries_both_tables() -> None:
    assert build_html_table_merge_prompt("<table>1</table>", "<table>2</table>") == (
        "Below are two tables in HTML format, merge them into one table in HTML format.\n"
        "TABLE 1:\n<table>1</table>\nTABLE 2:\n<table>2</table>\n"
    )


# --- decoding -----------------------------------------------------------------------------------


def test_valid_answer_decodes_every_field() -> None:
    decoded = parse_page_response(
        answer(primary_language="zh", rotation_correction=90, is_rotation_valid=False)
    )
    assert decoded == page("hello", primary_language="zh", rotation_correction=90,
                           is_rotation_valid=False)  # fmt: skip
    assert decoded is not None and decoded.to_dict()["rotation_correction"] == 90


def test_chinese_text_survives_decoding() -> None:
    decoded = parse_page_response(answer(natural_text="# 总则\n\n第一条 适用范围。"))
    assert decoded is not None and decoded.natural_text == "# 总则\n\n第一条 适用范围。"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# Just Markdown, not JSON",
        '{"primary_language": "en", "natural_text": "cut off',
        "[1, 2]",
        '"a string"',
        "null",
    ],
)
def test_non_json_or_non_object_is_rejected(text: str) -> None:
    assert parse_page_response(text) is None


@pytest.mark.parametrize(
    "key",
    [
        "primary_language",
        "is_rotation_valid",
        "rotation_correction",
        "is_table",
        "is_diagram",
        "natural_text",
    ],
)
def test_missing_key_is_rejected(key: str) -> None:
    data = page("x").to_dict()
    del data[key]
    assert parse_page_response(json.dumps(data)) is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("primary_language", 5),
        ("is_rotation_valid", "true"),
        ("is_rotation_valid", 1),
        ("rotation_correction", 45),
        ("rotation_correction", "90"),
        ("rotation_correction", True),
        ("rotation_correction", 90.0),
        ("is_table", None),
        ("is_diagram", 0),
        ("natural_text", ["a"]),
    ],
)
def test_wrong_type_or_value_is_rejected(key: str, value: object) -> None:
    assert parse_page_response(answer(**{key: value})) is None


def test_null_language_and_text_are_allowed_for_blank_pages() -> None:
    decoded = parse_page_response(answer(primary_language=None, natural_text=None))
    assert decoded is not None and decoded.natural_text is None
    assert render_page(decoded) == ""


def test_unknown_extra_keys_are_ignored() -> None:
    assert parse_page_response(answer(confidence=0.9)) == page("hello")


@pytest.mark.parametrize("fence", ["```json\n{}\n```", "```\n{}\n```", "  ```json\n{}\n```\n"])
def test_json_fence_is_tolerated(fence: str) -> None:
    assert parse_page_response(fence.replace("{}", answer())) == page("hello")


def test_fence_with_trailing_prose_is_rejected() -> None:
    assert parse_page_response(f"```json\n{answer()}\n```\nHope this helps!") is None


# --- tables -------------------------------------------------------------------------------------

COLSPAN = "<table><tr><td>A</td><td><l></td></tr><tr><td>1</td><td>2</td></tr></table>"
ROWSPAN = "<table><tr><td>A</td><td>B</td></tr><tr><td><t></td><td>2</td></tr></table>"
BOTH = (
    "<table><tr><td>A</td><td><l></td><td>B</td></tr>"
    "<tr><td><t></td><td><lt></td><td>C</td></tr>"
    "<tr><td>x</td><td>y</td><td>z</td></tr></table>"
)


@pytest.mark.parametrize(
    ("matrix", "html"),
    [
        (COLSPAN, '<table><tr><td colspan="2">A</td></tr><tr><td>1</td><td>2</td></tr></table>'),
        (ROWSPAN, '<table><tr><td rowspan="2">A</td><td>B</td></tr><tr><td>2</td></tr></table>'),
        (
            BOTH,
            '<table><tr><td rowspan="2" colspan="2">A</td><td>B</td></tr><tr><td>C</td></tr>'
            "<tr><td>x</td><td>y</td><td>z</td></tr></table>",
        ),
    ],
)
def test_matrix_to_html_spans(matrix: str, html: str) -> None:
    assert matrix_to_html(matrix) == html
    assert html_to_matrix(html) == matrix


def test_matrix_tolerates_whitespace_thead_th_and_closed_markers() -> None:
    matrix = (
        "<table>\n <thead><tr><th> Name </th><th><l></l></th></tr></thead>\n"
        " <tbody><tr><td>a</td><td>b</td></tr></tbody>\n</table>"
    )
    assert matrix_to_html(matrix) == (
        '<table><tr><th colspan="2">Name</th></tr><tr><td>a</td><td>b</td></tr></table>'
    )


def test_cell_markup_and_entities_are_kept_verbatim() -> None:
    matrix = "<table><tr><td>a &amp; b<br/>c</td><td><b>x</b> &lt; 3</td></tr></table>"
    assert matrix_to_html(matrix) == matrix


@pytest.mark.parametrize("text", ["R&D", "AT&T", "A & B", "a&b;c", "&D", "x&#", "Q&A&amp;"])
def test_bare_ampersands_survive_byte_for_byte(text: str) -> None:
    matrix = f"<table><tr><td>{text}</td><td><l></td></tr><tr><td>1</td><td>2</td></tr></table>"
    converted = matrix_to_html(matrix)
    assert converted == (
        f'<table><tr><td colspan="2">{text}</td></tr><tr><td>1</td><td>2</td></tr></table>'
    )
    assert html_to_matrix(converted) == matrix


def test_empty_rows_stay_and_do_not_break_the_matrix() -> None:
    matrix = (
        "<table><tr></tr><tr><td>A</td><td><l></td></tr><tr></tr>"
        "<tr><td>1</td><td>2</td></tr><tr><td><t></td><td>3</td></tr></table>"
    )
    assert matrix_to_html(matrix) == (
        '<table><tr></tr><tr><td colspan="2">A</td></tr><tr></tr>'
        '<tr><td rowspan="2">1</td><td>2</td></tr><tr><td>3</td></tr></table>'
    )
    # A rowspan cannot run through an empty row: this <t> covers nothing.
    with pytest.raises(TableFormatError):
        matrix_to_html("<table><tr><td>A</td></tr><tr></tr><tr><td><t></td></tr></table>")


def test_nested_table_stays_inside_its_cell() -> None:
    inner = "<table><tr><td>i</td></tr></table>"
    matrix = f"<table><tr><td>{inner}</td><td><l></td></tr></table>"
    assert matrix_to_html(matrix) == f'<table><tr><td colspan="2">{inner}</td></tr></table>'
    text = f"before {matrix} after"
    assert table_spans(text) == [(7, 7 + len(matrix))]


@pytest.mark.parametrize(
    "matrix",
    [
        "<table><tr><td><l></td><td>a</td></tr></table>",  # <l> with nothing to its left
        "<table><tr><td><t></td></tr></table>",  # <t> in the first row
        "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>",  # ragged rows
        # 2x2 span whose inner corner is not <lt>
        "<table><tr><td>A</td><td><l></td></tr><tr><td><t></td><td>x</td></tr></table>",
        # <lt> outside any span
        "<table><tr><td>A</td><td>B</td></tr><tr><td>C</td><td><lt></td></tr></table>",
        # already HTML with spans (rows of equal length, so only the span check catches it)
        '<table><tr><td colspan="2">A</td></tr><tr><td colspan="2">B</td></tr></table>',
        "<table></table>",
        "no table at all",
    ],
)
def test_malformed_matrix_raises_and_converts_to_marker_free_text(matrix: str) -> None:
    with pytest.raises(TableFormatError):
        matrix_to_html(matrix)
    fallback = convert_table(matrix)
    assert "<l>" not in fallback and "<t>" not in fallback and "<lt>" not in fallback
    assert fallback.replace("<td></td>", "") == (
        matrix.replace("<td><l></td>", "").replace("<td><t></td>", "").replace("<td><lt></td>", "")
    )


def test_html_to_matrix_rejects_overlapping_and_overflowing_spans() -> None:
    with pytest.raises(TableFormatError):
        html_to_matrix('<table><tr><td rowspan="3">a</td></tr><tr></tr></table>')
    with pytest.raises(TableFormatError):
        html_to_matrix(
            '<table><tr><td>a</td><td rowspan="2">b</td></tr>'
            '<tr><td colspan="2">c</td></tr></table>'
        )


def test_table_rows_gives_cell_html_per_row() -> None:
    assert table_rows(BOTH) == [["A", "<l>", "B"], ["<t>", "<lt>", "C"], ["x", "y", "z"]]
    assert table_rows("plain text") == []


# --- rendering ----------------------------------------------------------------------------------


def test_render_converts_every_table_and_drops_placeholders() -> None:
    text = (
        f"# Title\n\n<Image>(10,20),(300,400)</Image>\n\n{COLSPAN}\n\nMiddle {ROWSPAN} end\n\n"
        "<Image>(1, 2), (3, 4)</Image>\nCaption under the figure"
    )
    assert render_page(page(text)) == (
        '# Title\n\n<table><tr><td colspan="2">A</td></tr><tr><td>1</td><td>2</td></tr></table>'
        '\n\nMiddle <table><tr><td rowspan="2">A</td><td>B</td></tr><tr><td>2</td></tr></table>'
        " end\n\nCaption under the figure"
    )


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("a <Image>(1,2),(3,4)</Image> b", "a b"),  # one space stays between the words
        ("<Image>(1,2),(3,4)</Image> Caption", "Caption"),
        ("Figure: <Image>(1,2),(3,4)</Image>", "Figure:"),
        ("x\n<Image>(1,2),(3,4)</Image>\ny", "x\ny"),  # a line of its own goes
        ("x\n\n <Image>(1,2),(3,4)</Image> <Image>(5,6),(7,8)</Image>\n\ny", "x\n\ny"),
    ],
)
def test_inline_placeholders_go_without_gluing_words(text: str, rendered: str) -> None:
    assert render_page(page(text)) == rendered


def test_render_keeps_placeholders_when_asked() -> None:
    text = "Intro\n\n<Image>(10,20),(300,400)</Image>\n\nOutro"
    assert render_page(page(text), keep_image_placeholders=True) == text
    assert render_page(page(text)) == "Intro\n\nOutro"


def test_render_falls_back_on_malformed_table_without_raising() -> None:
    text = "看表：\n\n<table><tr><td>项目</td><td><l></td></tr><tr><td><l></td></tr></table>"
    assert render_page(page(text, primary_language="zh")) == (
        "看表：\n\n<table><tr><td>项目</td><td></td></tr><tr><td></td></tr></table>"
    )


def test_render_chinese_page_with_span_table() -> None:
    text = (
        "# 销售统计\n\n<table><tr><td>地区</td><td>2023年</td><td><l></td></tr>"
        "<tr><td><t></td><td>上半年</td><td>下半年</td></tr></table>"
    )
    assert render_page(page(text, primary_language="zh")) == (
        '# 销售统计\n\n<table><tr><td rowspan="2">地区</td><td colspan="2">2023年</td></tr>'
        "<tr><td>上半年</td><td>下半年</td></tr></table>"
    )


def test_unterminated_table_is_still_rendered() -> None:
    text = "<table><tr><td>A</td><td><l></td></tr>"
    assert render_page(page(text)) == '<table><tr><td colspan="2">A</td></tr></table>'

"""OCRFlux's page protocol: the trained prompts, the page-response JSON and its rendering.

OCRFlux-3B answers the page prompt with JSON (`PageResponse`) whose `natural_text` holds the
page Markdown. Tables in it are *cell matrices*: an HTML table with one `<td>` per grid cell,
where a cell covered by a span holds a marker instead of text:

* `<l>`  - covered by the colspan of the cell to its left,
* `<t>`  - covered by the rowspan of the cell above,
* `<lt>` - covered by both (inside a cell that spans rows and columns).

`render_page` turns those into ordinary HTML tables with `rowspan`/`colspan` (the tables
themselves live in `ocrflux.format.html_tables`, re-exported here) and drops the
`<Image>(x1,y1),(x2,y2)</Image>` placeholders. Everything here is pure and never raises on
model output: a malformed matrix falls back to its text with the markers removed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from ocrflux.format.html_tables import (
    TableFormatError,
    convert_table,
    convert_tables,
    html_to_matrix,
    matrix_to_html,
    table_rows,
    table_spans,
)

__all__ = [
    "PageResponse",
    "TableFormatError",
    "build_element_merge_detect_prompt",
    "build_html_table_merge_prompt",
    "build_page_prompt",
    "convert_table",
    "html_to_matrix",
    "matrix_to_html",
    "parse_page_response",
    "render_page",
    "table_rows",
    "table_spans",
]

# --- prompts (must stay byte-identical to the OCRFlux toolkit's ocrflux/prompts.py) ----------

_PAGE_PROMPT = (
    "Below is the image of one page of a document. "
    "Just return the plain text representation of this document as if you were reading it"
    " naturally.\n"
    "ALL tables should be presented in HTML format.\n"
    'If there are images or figures in the page, present them as "<Image>(left,top),'
    '(right,bottom)</Image>", (left,top,right,bottom) are the coordinates of the top-left and'
    " bottom-right corners of the image or figure.\n"
    "Present all titles and headings as H1 headings.\n"
    "Do not hallucinate.\n"
)


def build_page_prompt() -> str:
    """The page-to-Markdown prompt OCRFlux-3B was trained on (toolkit's name:
    `build_page_to_markdown_prompt`)."""
    return _PAGE_PROMPT


def build_element_merge_detect_prompt(text_list_1: list[str], text_list_2: list[str]) -> str:
    """The cross-page prompt asking which elements of two consecutive pages continue each other."""
    parts = [
        "Below are two consecutive pages in Markdown format, where each element of them is"
        " numbered. Identify pairs of elements which should be merged across the two pages,"
        " such as text paragraphs or tables that span across the two pages. Return pairs as"
        " [(element_index_of_page1, element_index_of_page2), ...] or [] if no elements should"
        " be merged.\n",
        "Previous page:\n",
    ]
    parts += [f"{i}. {text}\n\n" for i, text in enumerate(text_list_1)]
    parts.append("Next page:\n")
    parts += [f"{i}. {text}\n\n" for i, text in enumerate(text_list_2)]
    return "".join(parts)


def build_html_table_merge_prompt(table1: str, table2: str) -> str:
    """The prompt asking the model to merge two fragments of one table split across pages."""
    return (
        "Below are two tables in HTML format, merge them into one table in HTML format.\n"
        f"TABLE 1:\n{table1}\nTABLE 2:\n{table2}\n"
    )


# --- page response ----------------------------------------------------------------------------

_ROTATIONS = frozenset({0, 90, 180, 270})
_FENCE = re.compile(r"\A```[A-Za-z]*[ \t]*\n(?P<body>.*)\n```\Z", re.DOTALL)


@dataclass(frozen=True)
class PageResponse:
    """One decoded page answer, field for field as OCRFlux-3B emits it."""

    primary_language: str | None
    is_rotation_valid: bool
    rotation_correction: int
    is_table: bool
    is_diagram: bool
    natural_text: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_page_response(text: str) -> PageResponse | None:
    """Decode a page answer; None unless it is a JSON object with every field of the right type.

    A ```json fence around the whole answer is tolerated (the model does not emit one, but
    general VLMs sometimes do). Unknown extra keys are ignored. `natural_text` may be null
    (a blank page). Any other deviation means "not a page response", so the caller retries.
    """
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group("body").strip()
    try:
        data = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        language = data["primary_language"]
        rotation_valid = data["is_rotation_valid"]
        rotation = data["rotation_correction"]
        is_table = data["is_table"]
        is_diagram = data["is_diagram"]
        natural_text = data["natural_text"]
    except KeyError:
        return None
    if not (
        (language is None or isinstance(language, str))
        and isinstance(rotation_valid, bool)
        and _is_int(rotation)
        and rotation in _ROTATIONS
        and isinstance(is_table, bool)
        and isinstance(is_diagram, bool)
        and (natural_text is None or isinstance(natural_text, str))
    ):
        return None
    return PageResponse(language, rotation_valid, rotation, is_table, is_diagram, natural_text)


_IMAGE = re.compile(r"<Image>[^<]*</Image>", re.IGNORECASE)


def _line_without_images(line: str) -> str:
    """The blanks before a placeholder go with it (after it too at the start of the line), so
    "a <Image>..</Image> b" keeps one space between a and b."""
    kept, pos = "", 0
    for found in _IMAGE.finditer(line):
        kept += line[pos : found.start()].rstrip(" \t")
        pos = found.end()
    rest = line[pos:]
    return kept + (rest if kept.strip() else rest.lstrip(" \t"))


def _drop_images(text: str) -> str:
    """Placeholders removed; a line or block that held nothing else goes with them."""
    blocks = []
    for block in text.split("\n\n"):
        if _IMAGE.search(block):
            lines = []
            for line in block.split("\n"):
                if _IMAGE.search(line):
                    line = _line_without_images(line)
                    if not line.strip():
                        continue
                lines.append(line)
            block = "\n".join(lines)
            if not block.strip():
                continue
        blocks.append(block)
    return "\n\n".join(blocks)


def render_page(page: PageResponse, *, keep_image_placeholders: bool = False) -> str:
    """The page's Markdown: matrix tables become HTML tables, image placeholders are dropped."""
    text = convert_tables(page.natural_text or "")
    if not keep_image_placeholders:
        text = _drop_images(text)
    return text.strip()

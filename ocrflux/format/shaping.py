"""Output shaping for OCRFlux mode: choose the format, build the answer.

Output format, when the request has no explicit `output_format`, is inferred from the client's
system prompt (case-insensitive; the first row that matches wins):

| format     | keywords in the system prompt                                                  |
|------------|--------------------------------------------------------------------------------|
| `json`     | `json`                                                                         |
| `list`     | `列表`, `清单`, `清單`, `条目`, `逐条`, `要点`, `list`, `lists`, `bullet`,      |
|            | `bullets`, `bulleted`, `bullet points`, `checklist`, `itemize`, `itemise`       |
| `markdown` | anything else (also when there is no system prompt)                            |

Checkboxes are normalised by `ocrflux.format.checkboxes` before shaping.
"""

from __future__ import annotations

import html
import re
from typing import Literal

import orjson

from ocrflux.format.checkboxes import normalize_checkboxes
from ocrflux.format.html_tables import table_rows, table_spans
from ocrflux.format.page import PageResponse, render_page

__all__ = [
    "OutputFormat",
    "infer_output_format",
    "shape_document",
    "shape_pages",
    "to_markdown_list",
]

OutputFormat = Literal["markdown", "list", "json"]

# --- format inference ---------------------------------------------------------------------------

_JSON_WORDS = re.compile(r"json", re.IGNORECASE)
_LIST_WORDS = re.compile(
    r"列表|清单|清單|条目|逐条|要点"
    r"|\b(?:lists?|bullet(?:s|ed)?|checklists?|itemi[sz]e)\b",
    re.IGNORECASE,
)


def infer_output_format(system_prompt: str | None) -> OutputFormat:
    """Guess the wanted format from the system prompt (keyword table in the module docstring)."""
    if not system_prompt:
        return "markdown"
    if _JSON_WORDS.search(system_prompt):
        return "json"
    if _LIST_WORDS.search(system_prompt):
        return "list"
    return "markdown"


# --- Markdown list ------------------------------------------------------------------------------

_HEADING_START = re.compile(r" {0,3}(#{1,6})[ \t]+")
_LIST_ITEM = re.compile(r"^([ \t]*)([-*+]|\d{1,9}[.)])[ \t]+(.*)$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_PIPE_ROW = re.compile(r"^\s*\|(.*)\|\s*$")
_PIPE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
# Text that would read as a nested list marker once it follows "- " ("# 1. Intro" -> "1\. Intro").
_LOOKS_LIKE_MARKER = re.compile(r"^(\d{1,9})([.)])(?=\s|$)|^([-*+])(?=\s|$)")


def _strip_tags(text: str) -> str:
    r"""`re.sub(r"<[^>]+>", "", text)` in linear time (that regex scans to the end of the text
    from every `<` without a `>` after it)."""
    out: list[str] = []
    pos = 0
    while (start := text.find("<", pos)) >= 0:
        end = text.find(">", start + 1)
        if end < 0:
            break  # no `>` left: no later `<` starts a tag either
        if end == start + 1:  # "<>" is not a tag
            out.append(text[pos : start + 1])
            pos = start + 1
            continue
        out.append(text[pos:start])
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


def _heading(line: str) -> tuple[int, str] | None:
    r"""(level, text) of an ATX heading line, else None.

    What `^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$` captures, in linear time (the lazy
    group retried the blank run at each step: a heading with 60,000 inner blanks took
    seconds): the text after the opening blanks, without trailing blanks, and without a
    closing run of `#` when a blank precedes it.
    """
    opening = _HEADING_START.match(line)
    if opening is None:
        return None
    text = line[opening.end() :].rstrip(" \t")
    bare = text.rstrip("#")
    if bare != text and bare[-1:] in (" ", "\t"):
        text = bare.rstrip(" \t")
    return len(opening.group(1)), text


def _cell_text(cell_html: str) -> str:
    text = html.unescape(_strip_tags(_BREAK.sub(" ", cell_html)))
    return " ".join(text.split())


class _ListBuilder:
    """Accumulates (depth, marker, text) items while walking the Markdown top to bottom."""

    def __init__(self) -> None:
        self.items: list[tuple[int, str, str]] = []
        self.headings: list[int] = []  # levels of the open headings
        self.list_indents: list[int] = []  # indents of the open items of a Markdown list

    @property
    def content_depth(self) -> int:
        return len(self.headings)

    def add(self, depth: int, text: str, marker: str = "-", *, escape: bool = True) -> None:
        text = text.strip()
        if escape:
            text = _LOOKS_LIKE_MARKER.sub(
                lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", text
            )
        if text:
            self.items.append((depth, marker, text))

    def heading(self, level: int, text: str) -> None:
        self.list_indents.clear()
        while self.headings and self.headings[-1] >= level:
            self.headings.pop()
        self.add(len(self.headings), text)
        self.headings.append(level)

    def list_item(self, indent: int, marker: str, text: str) -> None:
        while self.list_indents and self.list_indents[-1] > indent:
            self.list_indents.pop()
        if not self.list_indents or self.list_indents[-1] < indent:
            self.list_indents.append(indent)
        marker = "-" if marker in "*+" else marker
        self.add(self.content_depth + len(self.list_indents) - 1, text, marker, escape=False)

    def line(self, raw: str) -> None:
        if not raw.strip():
            self.list_indents.clear()
            return
        if heading := _heading(raw):
            self.heading(*heading)
        elif item := _LIST_ITEM.match(raw):
            indent = len(item.group(1).expandtabs(4))
            self.list_item(indent, item.group(2), item.group(3))
        elif _RULE.match(raw) or ("|" in raw and _PIPE_SEPARATOR.match(raw)):
            return
        elif row := _PIPE_ROW.match(raw):
            self.row([cell.strip() for cell in row.group(1).split("|")])
        elif self.list_indents and raw[:2].isspace():
            # an indented line under a list item continues it: nest it under that item
            self.add(self.content_depth + len(self.list_indents), raw)
        else:
            self.list_indents.clear()
            self.add(self.content_depth, raw.lstrip().removeprefix(">").strip())

    def row(self, cells: list[str]) -> None:
        self.add(self.content_depth, " | ".join(cell for cell in cells if cell))

    def table(self, table_html: str) -> None:
        self.list_indents.clear()
        for cells in table_rows(table_html):
            self.row([_cell_text(cell) for cell in cells])

    def render(self) -> str:
        lines: list[str] = []
        indents = [""]  # indents[d]: leading spaces of an item at depth d
        for depth, marker, text in self.items:
            depth = min(depth, len(indents) - 1)
            lines.append(f"{indents[depth]}{marker} {text}")
            del indents[depth + 1 :]
            indents.append(indents[depth] + " " * (len(marker) + 1))
        return "\n".join(lines)


def to_markdown_list(markdown: str) -> str:
    """Reshape page Markdown into one Markdown list that keeps its hierarchy.

    Headings become parent items with what follows nested under them (by heading level),
    every other line becomes an item, existing lists keep their nesting under their heading,
    and each table row (HTML or pipe) becomes one item with its cells joined by " | ".
    """
    builder = _ListBuilder()
    pos = 0
    for start, end in [*table_spans(markdown), (len(markdown), len(markdown))]:
        for raw in markdown[pos:start].split("\n"):
            builder.line(raw)
        if start < end:
            builder.table(markdown[start:end])
        pos = end
    return builder.render()


# --- whole answer -------------------------------------------------------------------------------


def _page_markdown(page: PageResponse, keep_image_placeholders: bool) -> str:
    return normalize_checkboxes(render_page(page, keep_image_placeholders=keep_image_placeholders))


def _page_object(number: int, page: PageResponse | str, keep: bool) -> dict[str, object]:
    if isinstance(page, str):
        return {
            "page": number,
            "fallback": True,
            "primary_language": None,
            "is_rotation_valid": None,
            "rotation_correction": None,
            "is_table": None,
            "is_diagram": None,
            "natural_text": page,
        }
    fields = page.to_dict()
    fields["natural_text"] = _page_markdown(page, keep)
    return {"page": number, "fallback": False, **fields}


def shape_document(markdown: str, fmt: OutputFormat) -> str:
    """The client-facing content for a document's assembled Markdown (`markdown` or `list`)."""
    text = normalize_checkboxes(markdown)
    return to_markdown_list(text) if fmt == "list" else text


def shape_pages(
    pages: list[PageResponse | str], fmt: OutputFormat, *, keep_image_placeholders: bool
) -> str:
    """The client-facing content for the pages of one request, in order.

    A `str` page is the raw answer of a page that never decoded; it is passed through verbatim
    in `markdown` and `list`, and as `natural_text` with `"fallback": true` in `json`.
    `json` is a JSON array with one object per page: `page` (1-based), `fallback`, the
    page-response fields, and `natural_text` rendered (HTML tables, normalised checkboxes).
    """
    if fmt == "json":
        objects = [
            _page_object(i, page, keep_image_placeholders) for i, page in enumerate(pages, 1)
        ]
        return orjson.dumps(objects).decode()
    parts: list[str] = []
    for page in pages:
        if isinstance(page, str):
            text = page.strip()
        else:
            text = _page_markdown(page, keep_image_placeholders)
            if fmt == "list":
                text = to_markdown_list(text)
        if text:
            parts.append(text)
    return "\n\n".join(parts)

"""Output shaping for OCRFlux mode: choose the format, normalise checkboxes, build the answer.

Output format, when the request has no explicit `output_format`, is inferred from the client's
system prompt (case-insensitive; the first row that matches wins):

| format     | keywords in the system prompt                                                  |
|------------|--------------------------------------------------------------------------------|
| `json`     | `json`                                                                         |
| `list`     | `列表`, `清单`, `清單`, `条目`, `逐条`, `要点`, `list`, `lists`, `bullet`,      |
|            | `bullets`, `bulleted`, `bullet points`, `checklist`, `itemize`, `itemise`       |
| `markdown` | anything else (also when there is no system prompt)                            |

Checkboxes (`normalize_checkboxes`) become `[√]` (checked) or `[ ]` (unchecked):

* checked: ☑ ☒ ✓ ✔ √ ■ ▣ ✅ ⊠ 🗹, `[x]` `[X]`, and any bracket holding a tick, e.g. `(√)`, `【✓】`;
* unchecked: ☐ □ ▢ ⬜ 🗆, `[ ]`, and a bracket holding an empty box, e.g. `(□)`;
* `(x)` `(X)` `( )` and their full-width forms `（x）` `（ ）` `【 】` are boxes only when the same
  line holds another box ("性别：(x) 男 ( ) 女"), because alone they are usually an enumerator
  ("(x)" = item ten) or an exam blank ("正确的是（ ）");
* never touched: code spans and fences, math (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`),
  `√` followed by a digit, a Latin letter or a bracket (`√2`, `√(x+1)`), and brackets glued to a
  preceding letter or digit or followed by `(` (`f(x)`, `R[x]`, `[x](link)`).

A box never moves to another line; a space is put between a box and the text it labels.
"""

from __future__ import annotations

import bisect
import html
import re
from typing import Literal

import orjson

from ocrflux.page_format import PageResponse, render_page
from ocrflux.page_tables import table_rows, table_spans

__all__ = [
    "OutputFormat",
    "infer_output_format",
    "normalize_checkboxes",
    "shape_document",
    "shape_pages",
    "to_markdown_list",
]

OutputFormat = Literal["markdown", "list", "json"]

CHECKED = "[√]"
UNCHECKED = "[ ]"

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


# --- checkboxes ---------------------------------------------------------------------------------

_TICKS = "☑☒✓✔√■▣✅⊠🗹"
_EMPTIES = "☐□▢⬜🗆"
_BOX = re.compile(
    rf"(?P<open>[\[(（【［])[ \u3000]{{0,2}}(?P<inner>[xX{_TICKS}{_EMPTIES}]\ufe0f?)?"
    rf"[ \u3000]{{0,2}}(?P<close>[\])）】］])"
    rf"|(?P<glyph>[{_TICKS}{_EMPTIES}])\ufe0f?"
)
_PAIRS = {"[": "]", "(": ")）", "（": ")）", "【": "】", "［": "］"}
_PROTECTED_START = re.compile(r"`|\$|\\[(\[]")
_NEXT_BACKTICK_OR_LINE = re.compile(r"[`\n]")
_NEXT_DOLLAR_OR_LINE = re.compile(r"[$\n]")
_CLOSERS = {"$$": "$$", "\\(": "\\)", "\\[": "\\]"}
_MATH_AFTER_ROOT = re.compile(r"[0-9A-Za-z({\[]")
# A glyph before a box is a rejected one (e.g. the root in "√[ ]"); a space would make it a box
# on the next pass, so normalising twice would differ from normalising once.
_NO_SPACE_BEFORE = set("([{（【［<>|:：、,，\"'“‘" + _TICKS + _EMPTIES)
_NO_SPACE_AFTER = set(")]}）】］<>|,，.。;；:：、!！?？\"'”’")


def _classify(text: str, box: re.Match[str]) -> tuple[bool, bool] | None:
    """(checked, strong) for a real box, None when the match is ordinary text."""
    before = text[box.start() - 1] if box.start() else ""
    after = text[box.end()] if box.end() < len(text) else ""
    glyph = box.group("glyph")
    if glyph:
        if glyph == "√" and _MATH_AFTER_ROOT.match(after):
            return None
        return glyph in _TICKS, True
    opener, inner = box.group("open"), box.group("inner")
    if box.group("close") not in _PAIRS[opener]:
        return None
    if (before.isascii() and before.isalnum()) or after in ("(", "["):
        return None
    if inner is None:
        # "[]" and "()" are not boxes; a blank needs at least one space inside.
        if box.end() - box.start() == 2:
            return None
        return False, opener == "["
    mark = inner[0]
    if mark in _TICKS or mark in _EMPTIES:
        return mark in _TICKS, True
    return True, opener == "["  # x / X


def _protected_spans(text: str) -> list[tuple[int, int]]:
    r"""Code fences, code spans and math, left to right, in linear time.

    The spans of the regex
    ```` ```.*?(?:```|\Z)|`[^`\n]+`|\$\$.*?\$\$|\$[^$\n]+\$|\\\(.*?\\\)|\\\[.*?\\\] ````
    (DOTALL), which rescans to the end of the text from every `\(` without a `\)` (60,000
    characters of `\(`: minutes). A closer missing after one opener is missing after every
    later one, so each is looked for once.
    """
    spans: list[tuple[int, int]] = []
    missing: set[str] = set()  # openers whose closer no longer occurs
    pos = 0
    while found := _PROTECTED_START.search(text, pos):
        start = found.start()
        end = _protected_end(text, start, missing)
        if end is None:
            pos = start + 1
        else:
            spans.append((start, end))
            pos = end
    return spans


def _protected_end(text: str, start: int, missing: set[str]) -> int | None:
    """Where the protected span opening at `start` ends (None: it is not one)."""
    if text.startswith("```", start):
        close = text.find("```", start + 3)
        return len(text) if close < 0 else close + 3  # an unclosed fence runs to the end
    first = text[start]
    opener = text[start : start + 2]
    if opener in _CLOSERS and opener not in missing:
        close = text.find(_CLOSERS[opener], start + 2)
        if close >= 0:
            return close + 2
        missing.add(opener)
    if first == "\\":
        return None
    # `x` or $x$: at least one character, not the delimiter, on the same line.
    found = (_NEXT_BACKTICK_OR_LINE if first == "`" else _NEXT_DOLLAR_OR_LINE).search(
        text, start + 1
    )
    if found is None or found.group() == "\n" or found.start() == start + 1:
        return None
    return found.end()


def normalize_checkboxes(text: str) -> str:
    """Rewrite every checkbox notation as `[√]` or `[ ]` (rules in the module docstring)."""
    protected = _protected_spans(text)
    starts = [s for s, _ in protected]
    line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    found: list[tuple[int, int, bool, bool, int]] = []  # start, end, checked, strong, line
    for box in _BOX.finditer(text):
        i = bisect.bisect_right(starts, box.start()) - 1
        if i >= 0 and box.start() < protected[i][1]:
            continue
        kind = _classify(text, box)
        if kind is not None:
            line = bisect.bisect_right(line_starts, box.start())
            found.append((box.start(), box.end(), *kind, line))
    per_line: dict[int, int] = {}
    for *_, line in found:
        per_line[line] = per_line.get(line, 0) + 1

    out: list[str] = []
    pos = 0
    for start, end, checked, strong, line in found:
        if not strong and per_line[line] < 2:
            continue
        _emit_text(out, text[pos:start])
        if out and out[-1] and not out[-1][-1].isspace() and out[-1][-1] not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append(CHECKED if checked else UNCHECKED)
        pos = end
        nxt = text[end : end + 1]
        if nxt and not nxt.isspace() and nxt not in _NO_SPACE_AFTER and not _BOX.match(text, end):
            out.append(" ")
    _emit_text(out, text[pos:])
    return "".join(out)


def _emit_text(out: list[str], chunk: str) -> None:
    if chunk:
        out.append(chunk)


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

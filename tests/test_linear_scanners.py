"""The linear-time scanners that replaced quadratic regexes give the regexes' own answers.

Each reference below is the regex the product used before (it rescans to the end of the text
from every unclosed opener: 60,000 characters of model output took seconds to minutes). On
short random text over the characters that matter, the scanner must agree with it exactly.
The abuse suite (tests/abuse) replays the long inputs end to end.
"""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ocrflux.format.checkboxes import _protected_spans
from ocrflux.format.html_tables import _read_rows, table_rows, table_spans
from ocrflux.format.shaping import _heading, _strip_tags

OLD_PROTECTED = re.compile(
    r"```.*?(?:```|\Z)|`[^`\n]+`|\$\$.*?\$\$|\$[^$\n]+\$|\\\(.*?\\\)|\\\[.*?\\\]", re.DOTALL
)
OLD_TABLE_TAG = re.compile(r"<(/?)table\b[^>]*>", re.IGNORECASE)
OLD_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
OLD_TAG = re.compile(r"<[^>]+>")

RUNS = settings(max_examples=400, deadline=None)


def old_table_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    depth = start = 0
    for tag in OLD_TABLE_TAG.finditer(text):
        if not tag.group(1):
            if depth == 0:
                start = tag.start()
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                spans.append((start, tag.end()))
    if depth:
        spans.append((start, len(text)))
    return spans


def pieces(*parts: str, max_size: int = 40) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(parts), max_size=max_size).map("".join)


@RUNS
@given(pieces("`", "```", "$", "$$", "\\(", "\\)", "\\[", "\\]", "\\", "(", "a", " ", "\n"))
@example("\\(" * 50)
@example("$$a$ $$`x` ```\n`` $\n$")
def test_protected_spans_are_the_regexes_spans(text: str) -> None:
    assert _protected_spans(text) == [m.span() for m in OLD_PROTECTED.finditer(text)]


@RUNS
@given(pieces("<table", "</table", "<TABLE", "<tables", ">", "<", " ", "x", "<table>", "</table>"))
@example("<table" * 20)
@example("<table <table>x</table></table")
def test_table_spans_are_the_regexes_spans(text: str) -> None:
    assert table_spans(text) == old_table_spans(text)


@RUNS
@given(pieces("#", " ", "\t", "a", "b", "#" * 7, "  ", max_size=20))
@example("# a" + " " * 40 + "b")
@example("#  ##")
@example("## Title ## ")
@example("#\t#")
def test_heading_is_the_regexes_heading(line: str) -> None:
    found = OLD_HEADING.match(line)
    assert _heading(line) == (None if found is None else (len(found[1]), found[2]))


@RUNS
@given(pieces("<", ">", "<>", "a", "<b>", "</b>", " ", "<br/>"))
@example("<" * 30 + "a>")
def test_strip_tags_is_the_regexes_substitution(text: str) -> None:
    assert _strip_tags(text) == OLD_TAG.sub("", text)


@RUNS
@given(pieces("<", "<a", "<!--", "<?", "</", "<![CDATA[", "'", '"', "x", " ", "&", "&amp;", "<td"))
@example("<a b='" * 5)
@example("<!--" * 20)
def test_what_is_not_a_complete_tag_stays_text_in_the_cell(noise: str) -> None:
    # Without a `>` nothing in `noise` is a tag: HTMLParser used to rescan from each `<` of it.
    rows = table_rows(f"<table><tr><td>cell</td><td>{noise}</td></tr></table>")
    assert rows == [["cell", noise.strip()]]


def test_stray_angle_brackets_and_comments_stay_in_the_cell() -> None:
    html = "<table><tr><td>a < b <!-- c --> <x</td><td>R&D <b>bold</b></td></tr></table>"
    assert table_rows(html) == [["a < b <!-- c --> <x", "R&D <b>bold</b>"]]


def test_model_output_holding_every_private_use_character_still_parses() -> None:
    every = "".join(chr(code) for code in range(0xE000, 0xF900))
    rows = _read_rows(f"<table><tr><td>{every}&amp;<x</td></tr></table>")
    assert rows[0][0].content == f"{every}&amp;<x"

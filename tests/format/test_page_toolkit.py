"""Differential tests: the gateway's tables, page text and page-JSON decoding against the toolkit.

The OCRFlux toolkit (chatdoc-com/OCRFlux) is not on PyPI, so its behaviour is restated below,
function by function, from commit 71954ad, with BeautifulSoup's html.parser as it uses. On
thousands of generated inputs the gateway must give exactly the toolkit's answer, except for
the named classes in `BETTER`, where the gateway deliberately differs; for those the test
asserts the precise relation between the two answers instead of skipping them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from bs4 import BeautifulSoup
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocrflux.format.page import PageResponse, convert_table, parse_page_response, render_page
from tests.format.tilings import tilings

# Where the gateway is deliberately better than the toolkit, one line of reason each.
BETTER = {
    "entity": "cell text keeps its source bytes; the toolkit decodes `&lt;`/`&amp;` into raw "
    "markup characters inside the HTML it writes",
    "inline_markup": "a cell keeps its inner HTML (<b>, <br/>, <sup>); the toolkit's get_text "
    "drops the tags and glues the pieces together ('a <b>b</b>' -> 'ab')",
    "nested_table": "a table inside a cell stays in its cell; the toolkit's recursive "
    "find_all counts its rows and cells as the outer table's",
    "th": "<th> is a cell like <td>; the toolkit's find_all('td') drops header cells",
    "span_attr": "a table that already has rowspan/colspan is kept as the model wrote it; the "
    "toolkit throws the spans away",
    "late_empty_row": "an empty <tr></tr> after the first row is handled like a leading one; "
    "the toolkit's column check treats a 0-cell row as a mismatch only after the first row",
    "closing_marker": "a fallback removes a marker's closing tag too; the toolkit's "
    "str.replace leaves '</l>' behind",
    "table_in_block": "a table sharing a block with text is converted; the toolkit converts "
    "only a block that is exactly one table, leaving marker cells in the others",
    "blank_line_in_table": "a table with a blank line inside is still one table; the toolkit's "
    "split on blank lines cuts it in two and converts neither half",
    "inline_image": "an image placeholder inside a text block is dropped; the toolkit drops "
    "only a block that starts and ends with one",
    "page_edges": "the page text is stripped of surrounding whitespace",
    "lenient_json": "unknown extra keys and a ```json fence do not make a page unreadable",
    "null_text": "natural_text null is a blank page; the toolkit's None.split fails the page",
    "bool_rotation": "a boolean rotation_correction is a type error; the toolkit takes false as "
    "0 only because False == 0 in Python",
}


# --- the toolkit, restated ----------------------------------------------------------------------


def toolkit_matrix2html(matrix_table: str, *, empty_rows_anywhere: bool = False) -> str:
    """chatdoc-com/OCRFlux@71954ad ocrflux/table_format.py `table_matrix2html`.

    `empty_rows_anywhere` relaxes only its column check (`elif cid != colnum`) to accept a
    0-cell row after the first row as it accepts one before it (class "late_empty_row").
    """
    soup = BeautifulSoup(matrix_table, "html.parser")
    table = soup.find("table")
    colnum = 0
    cells: dict[tuple[int, int], str] = {}
    rid = 0
    for tr in table.find_all("tr"):  # type: ignore[union-attr]
        cid = 0
        for td in tr.find_all("td"):
            if td.find("l"):
                cells[(rid, cid)] = "<l>"
            elif td.find("t"):
                cells[(rid, cid)] = "<t>"
            elif td.find("lt"):
                cells[(rid, cid)] = "<lt>"
            else:
                cells[(rid, cid)] = td.get_text(strip=True)
            cid += 1
        if colnum == 0:
            colnum = cid
        elif cid != colnum and not (empty_rows_anywhere and cid == 0):
            raise ValueError("colnum not match")
        rid += 1
    rownum = rid
    out = ["<table>"]
    for rid in range(rownum):
        out.append("<tr>")
        for cid in range(colnum):
            if (rid, cid) not in cells:
                continue
            text = cells[(rid, cid)]
            if text in ("<l>", "<t>", "<lt>"):
                raise ValueError("cell not match")
            rowspan = colspan = 1
            for r in range(rid + 1, rownum):
                if cells.get((r, cid)) == "<t>":
                    rowspan += 1
                    del cells[(r, cid)]
                else:
                    break
            for c in range(cid + 1, colnum):
                if cells.get((rid, c)) == "<l>":
                    colspan += 1
                    del cells[(rid, c)]
                else:
                    break
            for r in range(rid + 1, rid + rowspan):
                for c in range(cid + 1, cid + colspan):
                    if cells[(r, c)] != "<lt>":  # a KeyError here is a failure as well
                        raise ValueError("cell not match")
                    del cells[(r, c)]
            attr = f' rowspan="{rowspan}"' if rowspan > 1 else ""
            attr += f' colspan="{colspan}"' if colspan > 1 else ""
            out.append(f"<td{attr}>{text}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def toolkit_table(text: str, *, empty_rows_anywhere: bool = False) -> str:
    """The table step of chatdoc-com/OCRFlux@71954ad ocrflux/pipeline.py `process_task`:
    `table_matrix2html`, or on any exception the text with its markers replaced away."""
    try:
        return toolkit_matrix2html(text, empty_rows_anywhere=empty_rows_anywhere)
    except Exception:
        return text.replace("<t>", "").replace("<l>", "").replace("<lt>", "")


def toolkit_page_text(natural_text: str) -> str:
    """The page step of chatdoc-com/OCRFlux@71954ad ocrflux/pipeline.py `process_task`:
    blocks split on blank lines, image blocks dropped, table blocks converted."""
    elements = []
    for text in natural_text.split("\n\n"):
        if text.startswith("<Image>") and text.endswith("</Image>"):
            pass
        elif text.startswith("<table>") and text.endswith("</table>"):
            elements.append(toolkit_table(text))
        else:
            elements.append(text)
    return "\n\n".join(elements)


_TOOLKIT_FIELDS = (
    "primary_language",
    "is_rotation_valid",
    "rotation_correction",
    "is_table",
    "is_diagram",
    "natural_text",
)


def toolkit_page_response(content: str) -> dict[str, object] | None:
    """chatdoc-com/OCRFlux@71954ad: `json.loads` + `PageResponse(**...)` (ocrflux/prompts.py,
    `__post_init__`) + the `natural_text.split` of `process_task`; None where it raises."""
    try:
        data = json.loads(content)
        if set(data) != set(_TOOLKIT_FIELDS):  # a dataclass takes exactly its fields
            return None
    except Exception:
        return None
    if data["rotation_correction"] not in {0, 90, 180, 270}:
        return None
    checks = [
        isinstance(data["primary_language"], (str, type(None))),
        isinstance(data["is_rotation_valid"], bool),
        isinstance(data["rotation_correction"], int),
        isinstance(data["is_table"], bool),
        isinstance(data["is_diagram"], bool),
        isinstance(data["natural_text"], (str, type(None))),
        isinstance(data["natural_text"], str),  # process_task calls natural_text.split
    ]
    return data if all(checks) else None


# --- generated matrices ---------------------------------------------------------------------------

PLAIN = st.text(
    alphabet=st.sampled_from("abcXYZ019 .,:;-+/%()'\"=中文表格☑√"), min_size=1, max_size=8
).map(str.strip)
# Bare `&`, `<`, `>` that are text to every HTML parser (no entity name starts with D or T).
BARE = st.sampled_from(["R&D", "AT&T", "A & B", "Q&A", "x &", "&&", "1 < 2", "x > y", "a <= b"])
ENTITY = st.sampled_from(["&amp;", "a &amp; b", "&copy; 2024", "&#169;", "caf&eacute;", "&quot;x"])
INLINE = st.sampled_from(
    ["a <b>b</b>", "x<br/>y", "m<sup>2</sup>", "<i>it</i> c", "H<sub>2</sub>O"]
)
NESTED = st.sampled_from(
    ["<table><tr><td>i</td></tr></table>", "<table><tr><td>p</td><td>q</td></tr></table>"]
)
CELL_FEATURES = ["entity", "inline_markup", "nested_table", "th", "span_attr", "closing_marker"]


@dataclass
class Case:
    """A generated table: the text, the gateway-better classes it belongs to, and its stand-ins."""

    text: str
    plain: str  # the same table with every special cell content replaced by a stand-in
    classes: set[str] = field(default_factory=set)
    stand_ins: dict[str, str] = field(default_factory=dict)
    anchor_tags: list[str] = field(default_factory=list)  # td/th of each non-marker cell

    def restore(self, text: str) -> str:
        for stand_in, source in self.stand_ins.items():
            text = text.replace(stand_in, source)
        return text


@st.composite
def matrices(draw: st.DrawFn, special: bool = True) -> Case:
    """A cell matrix as OCRFlux-3B writes it: a random tiling of spans, sometimes corrupted;
    with `special`, half of them also carry gateway-better classes."""
    nrows, ncols, spans = draw(tilings(max_side=5))
    grid: dict[tuple[int, int], str] = {}  # "" for an anchor, else its marker
    for r, c, rowspan, colspan in spans:
        for rr in range(r, r + rowspan):
            for cc in range(c, c + colspan):
                grid[(rr, cc)] = "lt" if rr > r and cc > c else "t" if rr > r else "l"
        grid[(r, c)] = ""
    # Corruptions the model makes: a wrong marker, a cell too many or too few.
    rows: list[list[str]] = [[grid[(r, c)] for c in range(ncols)] for r in range(nrows)]
    for _ in range(draw(st.integers(0, 2)) if draw(st.booleans()) else 0):
        r = draw(st.integers(0, nrows - 1))
        c = draw(st.integers(0, len(rows[r])))
        action = draw(st.sampled_from(["mark", "drop", "add"]))
        if action == "mark" and c < len(rows[r]):
            rows[r][c] = draw(st.sampled_from(["", "l", "t", "lt"]))
        elif action == "drop" and c < len(rows[r]):
            del rows[r][c]
        elif action == "add":
            rows[r].insert(c, "")

    # Half the tables are plain model output; the rest carry one or two gateway-better classes.
    features: set[str] = set()
    if special and draw(st.booleans()):
        features = draw(st.sets(st.sampled_from(CELL_FEATURES), min_size=1, max_size=2))
    case = Case("", "")
    # Whitespace the model puts around cell text and between cells.
    pad, sep = draw(st.sampled_from(["", " ", "\n"])), draw(st.sampled_from(["", "\n"]))
    text_rows, plain_rows = [], []
    for row in rows:
        cells, plain_cells = [], []
        for mark in row:
            if mark:
                spelling = "<" + mark + ">"
                if "closing_marker" in features and draw(st.booleans()):
                    spelling += f"</{mark}>"
                    case.classes.add("closing_marker")
                spelling = draw(st.sampled_from(["", " "])) + spelling
                cells.append(f"<td>{spelling}</td>")
                plain_cells.append(f"<td>{spelling}</td>")
                continue
            tag = "td"
            if "th" in features and draw(st.booleans()):
                tag = "th"
                case.classes.add("th")
            case.anchor_tags.append(tag)
            kinds = ["plain", "plain", "plain", "bare"]
            kinds += [k for k in ("entity", "inline_markup", "nested_table") if k in features]
            kind = draw(st.sampled_from(kinds))
            if kind in ("plain", "bare"):
                content = draw(PLAIN if kind == "plain" else BARE)
                plain = content
            else:
                content = draw({"entity": ENTITY, "inline_markup": INLINE}.get(kind, NESTED))
                plain = f"Z{len(case.stand_ins)}Q"
                case.stand_ins[plain] = content
                case.classes.add(kind)
            cells.append(f"<{tag}>{pad}{content}{pad}</{tag}>")
            plain_cells.append(f"<{tag}>{pad}{plain}{pad}</{tag}>")
        text_rows.append("<tr>" + sep.join(cells) + "</tr>")
        plain_rows.append("<tr>" + sep.join(plain_cells) + "</tr>")
    # An empty row before the first row (the toolkit accepts it) or later (it does not).
    if draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(0, len(text_rows)))
        text_rows.insert(at, "<tr></tr>")
        plain_rows.insert(at, "<tr></tr>")
    filled = [row != "<tr></tr>" for row in text_rows]  # a dropped cell can empty a row too
    if any(not f and any(filled[:i]) for i, f in enumerate(filled)):
        case.classes.add("late_empty_row")
    if "span_attr" in features:
        r = draw(st.integers(0, len(text_rows) - 1))
        if "<td>" in plain_rows[r]:
            span = draw(st.sampled_from([' colspan="2"', ' rowspan="2"']))
            text_rows[r] = text_rows[r].replace("<td>", f"<td{span}>", 1)
            plain_rows[r] = plain_rows[r].replace("<td>", f"<td{span}>", 1)
            case.classes.add("span_attr")
    joiner = draw(st.sampled_from(["", "\n"]))
    case.text = "<table>" + joiner.join(text_rows) + "</table>"
    case.plain = "<table>" + joiner.join(plain_rows) + "</table>"
    return case


def expected_gateway_table(case: Case) -> str:
    """The toolkit's answer, moved by each gateway-better class the case belongs to."""
    classes = case.classes
    if not classes:
        return toolkit_table(case.text)
    if "span_attr" in classes:
        # Kept as the model wrote it: the gateway's fallback, the markers removed.
        return re.sub(r"</?(?:lt|l|t)>", "", case.text)
    # th, entity, inline markup, nested table: what the toolkit does with the same table with
    # <td> cells of plain stand-ins, the gateway's tags and cell sources put back.
    td_only = case.plain.replace("<th>", "<td>").replace("</th>", "</td>")
    try:
        answer = toolkit_matrix2html(td_only, empty_rows_anywhere="late_empty_row" in classes)
    except Exception:
        answer = case.plain.replace("<t>", "").replace("<l>", "").replace("<lt>", "")
        if "closing_marker" in classes:
            answer = re.sub(r"</(?:lt|l|t)>", "", answer)
    else:
        tags = iter(case.anchor_tags)
        answer = re.sub(
            r"<td( [^>]*)?>(.*?)</td>",
            lambda m: (lambda tag: f"<{tag}{m.group(1) or ''}>{m.group(2)}</{tag}>")(next(tags)),
            answer,
        )
    return case.restore(answer)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrices())
def test_tables_equal_the_toolkit_except_where_better(case: Case) -> None:
    assert case.classes <= set(BETTER)
    assert convert_table(case.text) == expected_gateway_table(case)


# --- page text ----------------------------------------------------------------------------------

WORDS = st.lists(
    st.sampled_from(
        ["Total", "revenue", "R&D", "x < y", "**bold**", "$x^2$", "表格", "合计", "5 %"]
    ),
    min_size=1,
    max_size=4,
).map(" ".join)
PLACEHOLDER = st.builds(
    "<Image>({},{}),({},{})</Image>".format, *[st.integers(0, 999) for _ in range(4)]
)


@dataclass
class Page:
    """A generated natural_text, the toolkit's view of it, the gateway's expected answer."""

    text: str = ""
    toolkit: str = ""
    gateway: str = ""
    classes: set[str] = field(default_factory=set)


@st.composite
def pages(draw: st.DrawFn) -> Page:
    """natural_text as OCRFlux-3B writes it: blocks separated by blank lines."""
    page = Page()
    texts, gateway = [], []
    for kind in draw(st.lists(st.sampled_from(["heading", "text", "image", "table"]), max_size=6)):
        if kind == "heading":
            block = "# " + draw(WORDS)
            expected: str | None = block
        elif kind == "image":
            block, expected = draw(PLACEHOLDER), None  # both drop a placeholder block
        elif kind == "table":
            case = draw(matrices(special=False))
            block, expected = case.text, expected_gateway_table(case)
            page.classes |= case.classes
            if "\n\n" in block:
                page.classes.add("blank_line_in_table")
            if draw(st.integers(0, 4)) == 0:
                caption = draw(WORDS)
                block, expected = f"{caption}\n{block}", f"{caption}\n{expected}"
                page.classes.add("table_in_block")
        else:
            before, after = draw(WORDS), draw(WORDS)
            where = draw(st.sampled_from(["none"] * 4 + ["inline", "start", "end", "line"]))
            image = draw(PLACEHOLDER)
            block, expected = {
                "none": (f"{before}\n{after}", f"{before}\n{after}"),
                "inline": (f"{before} {image} {after}", f"{before} {after}"),
                "start": (f"{image} {after}", after),
                "end": (f"{before} {image}", before),
                "line": (f"{before}\n{image}\n{after}", f"{before}\n{after}"),
            }[where]
            if where != "none":
                page.classes.add("inline_image")
        texts.append(block)
        if expected is not None:
            gateway.append(expected)
    edges = draw(st.sampled_from([("", "")] * 3 + [("\n", ""), ("", "\n"), (" ", " \n\n")]))
    if edges != ("", ""):
        page.classes.add("page_edges")
    page.text = edges[0] + "\n\n".join(texts) + edges[1]
    page.toolkit = toolkit_page_text(page.text)
    page.gateway = "\n\n".join(gateway)
    return page


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages())
def test_page_text_equals_the_toolkit_except_where_better(page: Page) -> None:
    assert page.classes <= set(BETTER)
    rendered = render_page(PageResponse("en", True, 0, False, False, page.text))
    if not page.classes:
        assert rendered == page.toolkit
    assert rendered == page.gateway.strip()


# --- page JSON ------------------------------------------------------------------------------------

VALUES = {
    "primary_language": st.sampled_from(["en", "zh", None, 5, True]),
    "is_rotation_valid": st.sampled_from([True, False, 1, None]),
    "rotation_correction": st.sampled_from([0, 90, 180, 270, 45, -90, 90.0, "90", True, False]),
    "is_table": st.sampled_from([True, False, 0, "false"]),
    "is_diagram": st.sampled_from([True, False, None]),
    "natural_text": st.sampled_from(["# T\n\nbody", "", None, 3, ["a"]]),
}


@dataclass
class Answer:
    """A page answer; `plain` is it without the gateway-better liberties (what the toolkit reads
    as the same page: no extra key, no fence, "" for a null natural_text)."""

    text: str
    plain: str
    classes: set[str]


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    """A page answer: mostly the six fields, with the slips a model or a general VLM makes."""
    classes: set[str] = set()
    data = {key: draw(values) for key, values in VALUES.items()}
    for key in draw(st.sets(st.sampled_from(list(VALUES)), max_size=1)):
        del data[key]
    plain = dict(data)
    if draw(st.integers(0, 5)) == 0:
        data["confidence"] = 0.9
        classes.add("lenient_json")
    if "natural_text" in data and data["natural_text"] is None:
        plain["natural_text"] = ""
        classes.add("null_text")
    if isinstance(data.get("rotation_correction"), bool):
        classes.add("bool_rotation")
    ascii_only = draw(st.booleans())
    text, plain_text = json.dumps(data, ensure_ascii=ascii_only), json.dumps(plain)
    form = draw(st.sampled_from(["plain"] * 6 + ["fenced", "prose", "list", "cut"]))
    if form == "fenced":
        text = f"```json\n{text}\n```"
        classes.add("lenient_json")
    elif form == "prose":
        text, plain_text = "Here is the page: " + text, "Here is the page: " + plain_text
    elif form == "list":
        text, plain_text = f"[{text}]", f"[{plain_text}]"
    elif form == "cut":
        text, plain_text = text[: len(text) // 2], plain_text[: len(plain_text) // 2]
    return Answer(text, plain_text, classes)


@settings(max_examples=1000, deadline=None)
@given(answers())
def test_page_json_decodes_like_the_toolkit_except_where_better(answer: Answer) -> None:
    assert answer.classes <= set(BETTER)
    ours = parse_page_response(answer.text)
    if "bool_rotation" in answer.classes:
        assert ours is None
        return
    theirs = toolkit_page_response(answer.plain)  # == the text itself without a class
    assert (ours is not None) == (theirs is not None)
    if ours is not None and theirs is not None:
        expected = {**theirs, "natural_text": theirs["natural_text"] or None}
        assert ours.to_dict() == (expected if "null_text" in answer.classes else theirs)

"""Test pages rendered with real fonts, with the text they carry, and how to score a reading.

Fonts: Debian's fonts-dejavu-core (English) and fonts-wqy-zenhei (Chinese), installed by
.ci/run. Shared by the tests and `python -m bench.local_ocr`.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont
from rapidfuzz.distance import Levenshtein

FONTS = Path("/usr/share/fonts/truetype")
SANS = FONTS / "dejavu" / "DejaVuSans.ttf"
SANS_BOLD = FONTS / "dejavu" / "DejaVuSans-Bold.ttf"
CJK = FONTS / "wqy" / "wqy-zenhei.ttc"

SIZE = (1000, 1300)
INK = (20, 20, 20)


@dataclass(frozen=True)
class Page:
    """A rendered page and the text a perfect reading contains, in reading order."""

    name: str
    image: Image.Image
    text: str
    language: str | None
    data: bytes | None = None  # the encoded file, when it is not a PNG of `image`

    def encoded(self) -> bytes:
        """The bytes a client would send: the page's own file, else a PNG."""
        return self.data if self.data is not None else self.png()

    def png(self) -> bytes:
        out = io.BytesIO()
        self.image.save(out, "PNG")
        return out.getvalue()

    def jpeg(self, quality: int) -> bytes:
        out = io.BytesIO()
        self.image.convert("RGB").save(out, "JPEG", quality=quality)
        return out.getvalue()


def font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


class Sheet:
    """A white page and a pen that records the text it writes."""

    def __init__(self, size: tuple[int, int] = SIZE) -> None:
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        self.parts: list[str] = []

    def text(self, xy: tuple[int, int], text: str, face: ImageFont.FreeTypeFont) -> None:
        self.draw.text(xy, text, font=face, fill=INK)
        self.parts.append(text)

    def checkbox(self, xy: tuple[int, int], side: int, state: str) -> None:
        """A drawn box: state "tick", "cross" or "empty"."""
        x, y = xy
        self.draw.rectangle((x, y, x + side, y + side), outline=INK, width=2)
        if state == "tick":
            points = [(x + 0.2 * side, y + 0.55 * side), (x + 0.42 * side, y + 0.78 * side)]
            points.append((x + 0.82 * side, y + 0.22 * side))
            self.draw.line(points, fill=INK, width=3)
        elif state == "cross":
            self.draw.line((x + 5, y + 5, x + side - 5, y + side - 5), fill=INK, width=3)
            self.draw.line((x + 5, y + side - 5, x + side - 5, y + 5), fill=INK, width=3)

    def checkbox_item(
        self, xy: tuple[int, int], state: str, label: str, face: ImageFont.FreeTypeFont
    ) -> None:
        x, y = xy
        self.checkbox((x, y + 4), 22, state)
        self.text((x + 36, y), label, face)

    def table(
        self,
        origin: tuple[int, int],
        widths: list[int],
        height: int,
        rows: list[list[str]],
        face: ImageFont.FreeTypeFont,
        title: str | None = None,
    ) -> int:
        """A ruled table (optionally under a title row spanning every column); its bottom y."""
        x0, y = origin
        xs = [x0]
        for w in widths:
            xs.append(xs[-1] + w)
        top = y
        if title is not None:
            self.text((x0 + 10, y + 9), title, face)
            y += height
        for row in rows:
            for c, cell in enumerate(row):
                self.text((xs[c] + 10, y + 9), cell, face)
            y += height
        for k in range(len(rows) + (title is not None) + 1):
            self.draw.line((x0, top + k * height, xs[-1], top + k * height), fill=INK, width=2)
        for k, x in enumerate(xs):
            start = top + height if title is not None and 0 < k < len(xs) - 1 else top
            self.draw.line((x, start, x, y), fill=INK, width=2)
        return y

    def page(self, name: str, language: str | None) -> Page:
        return Page(name, self.image, " ".join(self.parts), language)


PARAGRAPH = [
    "The inspector walked the whole site on Monday morning and",
    "recorded every finding below. Items marked as done were",
    "checked in person by the site manager.",
]
CHECKLIST = [
    ("tick", "Fire exits are clear", "[√]"),
    ("cross", "First aid kit is stocked", "[√]"),
    ("empty", "Ladders are tagged", "[ ]"),
    ("tick", "Scaffold has been inspected", "[√]"),
]
TABLE_TITLE = "Open actions"
TABLE = [
    ["Item", "Owner", "Due"],
    ["Fire drill", "J. Smith", "2024-05-01"],
    ["Signage", "A. Lee", "2024-06-15"],
]


def english_form() -> Page:
    """Title, paragraph, heading, drawn checkbox list, a glyph checkbox group, a ruled table
    whose title row spans all columns, a closing line."""
    s = Sheet()
    body = font(SANS, 24)
    s.text((60, 50), "Site Safety Inspection", font(SANS_BOLD, 44))
    for k, line in enumerate(PARAGRAPH):
        s.text((60, 140 + 34 * k), line, body)
    s.text((60, 280), "Checklist", font(SANS_BOLD, 36))
    for k, (state, label, _) in enumerate(CHECKLIST):
        s.checkbox_item((60, 350 + 44 * k), state, label, body)
    # Font glyphs this time (DejaVu's ☑ and ☐), several boxes on one line.
    s.draw.text((60, 560), "Weather: \u2611 Dry \u2610 Wet \u2610 Windy", font=body, fill=INK)
    s.parts.append("Weather: Dry Wet Windy")
    bottom = s.table((60, 640), [220, 240, 220], 48, TABLE, body, title=TABLE_TITLE)
    s.text((60, bottom + 50), "Signed by the site manager at the end of the visit.", body)
    return s.page("english_form", "en")


ZH_PARAGRAPH = [
    "本次检查于周一上午进行，检查人员走遍了整个现场，",
    "并记录了以下所有发现。标记为已完成的项目均已由",
    "现场经理亲自核实。",
]
ZH_CHECKLIST = [
    ("tick", "消防通道畅通", "[√]"),
    ("cross", "急救箱已备齐", "[√]"),
    ("empty", "梯子已贴标签", "[ ]"),
]
ZH_TABLE = [
    ["项目", "负责人", "截止日期"],
    ["消防演练", "张伟", "五月一日"],
    ["安全标志", "李娜", "六月十五日"],
]


def chinese_form() -> Page:
    """The Chinese counterpart: title, paragraph, checkbox list, a group line, a ruled table."""
    s = Sheet()
    body = font(CJK, 26)
    s.text((60, 50), "现场安全检查记录", font(CJK, 46))
    for k, line in enumerate(ZH_PARAGRAPH):
        s.text((60, 140 + 38 * k), line, body)
    for k, (state, label, _) in enumerate(ZH_CHECKLIST):
        s.checkbox_item((60, 300 + 46 * k), state, label, body)
    s.text((60, 460), "天气：", body)
    s.checkbox((150, 464), 22, "tick")
    s.text((186, 460), "晴", body)
    s.checkbox((240, 464), 22, "empty")
    s.text((276, 460), "雨", body)
    s.table((60, 540), [220, 220, 240], 50, ZH_TABLE, body)
    return s.page("chinese_form", "zh")


LEFT_COLUMN = (
    "Sales grew in every region this quarter, led by the northern stores where two new "
    "branches opened in April. Costs stayed flat because the new branches share a warehouse "
    "with the old ones."
)
RIGHT_COLUMN = (
    "Staff turnover fell to its lowest level in three years. Training hours doubled, and the "
    "mentoring scheme now covers every new hire during the first six months."
)


def _wrap(text: str, face: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and face.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


UNRULED = [
    ["Region", "First quarter", "Second quarter", "Change"],
    ["North", "1,204", "1,388", "+15%"],
    ["South", "987", "1,012", "+3%"],
    ["West", "1,530", "1,497", "-2%"],
]


def two_columns() -> Page:
    """A full-width heading over two columns of prose with aligned baselines, then a table
    drawn without rules (columns of figures)."""
    s = Sheet()
    body = font(SANS, 24)
    s.text((60, 50), "Quarterly Report", font(SANS_BOLD, 44))
    for x, column in ((60, LEFT_COLUMN), (540, RIGHT_COLUMN)):
        for k, line in enumerate(_wrap(column, body, 400)):
            s.text((x, 150 + 36 * k), line, body)
    text = ["Quarterly Report", LEFT_COLUMN, RIGHT_COLUMN]
    for k, row in enumerate(UNRULED):
        for x, cell in zip((60, 300, 540, 800), row, strict=True):
            s.text((x, 520 + 44 * k), cell, body)
        text += row
    return Page("two_columns", s.image, " ".join(text), "en")


def empty_page() -> Page:
    """Blank paper with faint scanner noise."""
    noise = Image.effect_noise((800, 1000), 3).point(lambda v: 250 + (v - 128) // 40)
    return Page("empty", noise.convert("RGB"), "", None)


def noisy(page: Page, degrees: float = 2.0, blur: float = 1.0, quality: int = 40) -> Page:
    """The page rotated, blurred and saved as a low-quality JPEG (decoded again)."""
    turned = page.image.rotate(
        degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white"
    )
    blurred = turned.filter(ImageFilter.GaussianBlur(blur))
    out = io.BytesIO()
    blurred.save(out, "JPEG", quality=quality)
    return Page(
        f"{page.name}_noisy", Image.open(io.BytesIO(out.getvalue())), page.text, page.language
    )


PAGES = {
    "english_form": english_form,
    "chinese_form": chinese_form,
    "two_columns": two_columns,
    "empty": empty_page,
    "english_form_noisy": lambda: noisy(english_form()),
}


# --- scoring ---------------------------------------------------------------------------------

_TAG = re.compile(r"<[^>]+>")
_MARK = re.compile(r"\[(?:√| )\]")
_HEADING = re.compile(r"^# ", re.MULTILINE)


def plain_text(markdown: str) -> str:
    """The words of a reading, without headings' `# `, checkbox marks and table tags."""
    text = _HEADING.sub("", markdown)
    text = html.unescape(_TAG.sub(" ", _MARK.sub(" ", text)))
    return " ".join(text.split())


def accuracy(expected: str, markdown: str, *, cjk: bool = False) -> float:
    """1 - edit distance / length, over whitespace-normalised text (no whitespace for CJK)."""
    want, got = " ".join(expected.split()), plain_text(markdown)
    if cjk:
        want, got = "".join(want.split()), "".join(got.split())
    if not want:
        return 1.0 if not got else 0.0
    return max(0.0, 1.0 - Levenshtein.distance(want, got) / len(want))


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, int, int]]] = []
        self._cell: list[str] | None = None
        self._spans = (1, 1)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag == "td":
            found = dict(attrs)
            self._cell = []
            self._spans = (int(found.get("rowspan") or 1), int(found.get("colspan") or 1))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(("".join(self._cell).strip(), *self._spans))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(markdown: str) -> list[list[list[tuple[str, int, int]]]]:
    """Every table in a reading: rows of (text, rowspan, colspan)."""
    found = []
    for table in re.findall(r"<table>.*?</table>", markdown, re.DOTALL):
        parser = _Cells()
        parser.feed(table)
        found.append(parser.rows)
    return found

"""Documents made on the fly for tests and benchmarks: PDFs, multi-page TIFFs, split content.

`make_pdf` writes a real vector PDF by hand (base-14 Helvetica, so no font files are needed and
pdfium draws real glyphs): paragraphs, `#` headings and HTML tables drawn as grids, any page
size, `/Rotate`, a corner mark to check orientation. `encrypted_pdf`, `corrupt_pdf` and
`zero_page_pdf` make the refusals; `multipage_tiff` the TIFF path; `slow_pdf` is small but
slow to draw (the render CPU budget); `scanned_pdf` and `text_heavy_pdf` feed the benchmark;
`office_file` and `opendocument` are the ZIPs that Office and OpenDocument files are.

`SCENARIOS` are documents whose content crosses page breaks (a paragraph split after '-', after
a CJK character, after a plain word; a table over two and over three pages), each with the
page Markdown the model would give, the model's merge answers, and the merged document worked
out by hand. `Scenario.page_answers()` feeds the fake vLLM's `page_answers` control, which keys
answers by the rendered page size: every page of a scenario has a distinct size.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from PIL import Image

from ocrflux.format.page import build_element_merge_detect_prompt, build_html_table_merge_prompt
from ocrflux.intake.images import toolkit_size

LETTER = (612.0, 792.0)
A4 = (595.276, 841.89)
MARGIN = 36.0
MARK_SIZE = 40.0  # points; the corner mark is a filled black square


@dataclass(frozen=True)
class Page:
    """One PDF page: size in points, content blocks, and its `/Rotate`.

    A block is a paragraph (wrapped to the page), a `# heading`, or an HTML table
    (`<table><tr><td>..</td></tr></table>`, drawn as a grid). Text outside Latin-1 (CJK) is
    drawn as "?": fake vLLM answers come from the page's size, not its pixels. `mark` draws a
    black square in the top-left corner of the unrotated page, to check where rotation puts it.
    """

    width: float = LETTER[0]
    height: float = LETTER[1]
    blocks: tuple[str, ...] = ()
    rotate: int = 0
    mark: bool = False
    font_size: float = 10.0

    def rendered_size(self, max_side: int = 1024) -> tuple[int, int]:
        """The page image's size at `max_side`: the toolkit's rule on its 72-dpi render."""
        width, height = math.ceil(self.width), math.ceil(self.height)
        if self.rotate % 180:
            width, height = height, width
        return toolkit_size(width, height, max_side)

    def key(self, max_side: int = 1024) -> str:
        """The fake vLLM's `page_answers` key for this page ("WxH" of the rendered image)."""
        width, height = self.rendered_size(max_side)
        return f"{width}x{height}"


# --- writing PDFs -----------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _wrap(text: str, chars: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > chars:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


_ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.DOTALL | re.IGNORECASE)
_CELL = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")


def _table_rows(html: str) -> list[list[str]]:
    return [
        [_TAG.sub("", cell).strip() for cell in _CELL.findall(row)] for row in _ROW.findall(html)
    ]


def _text_op(x: float, y: float, size: float, text: str) -> bytes:
    return b"BT /F1 %s Tf %s %s Td %s Tj ET\n" % (
        _num(size).encode(),
        _num(x).encode(),
        _num(y).encode(),
        _pdf_string(text),
    )


def _content(page: Page) -> bytes:
    """The page's content stream: blocks from the top, cut off at the bottom margin."""
    out = [b"0 g 0 G 0.5 w\n"]
    size = page.font_size
    leading = size * 1.25
    # Helvetica averages about half an em per character.
    chars = max(8, int((page.width - 2 * MARGIN) / (size * 0.5)))
    y = page.height - MARGIN - size
    for block in page.blocks:
        if y < MARGIN:
            break
        if block.lstrip().lower().startswith("<table"):
            rows = _table_rows(block)
            ncols = max((len(r) for r in rows), default=1) or 1
            col = (page.width - 2 * MARGIN) / ncols
            row_h = leading + 4
            for row in rows:
                if y - row_h < MARGIN:
                    break
                for c, cell in enumerate(row):
                    x = MARGIN + c * col
                    out.append(b"%s %s %s %s re S\n" % tuple(
                        _num(v).encode() for v in (x, y - 4, col, row_h)
                    ))  # fmt: skip
                    fit = cell[: max(1, int(col / (size * 0.5)) - 1)]
                    out.append(_text_op(x + 2, y, size, fit))
                y -= row_h
        elif block.startswith("# "):
            out.append(_text_op(MARGIN, y, size * 1.6, block[2:]))
            y -= leading * 1.6
        else:
            for line in _wrap(block, chars):
                if y < MARGIN:
                    break
                out.append(_text_op(MARGIN, y, size, line))
                y -= leading
        y -= leading * 0.6  # paragraph gap
    if page.mark:
        square = (0, page.height - MARK_SIZE, MARK_SIZE, MARK_SIZE)
        out.append(b"%s %s %s %s re f\n" % tuple(_num(v).encode() for v in square))
    return b"".join(out)


def _serialize(objects: list[bytes]) -> bytes:
    """Objects numbered from 1 (1 is the catalog) -> a PDF file with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def make_pdf(pages: Sequence[Page], *, compress: bool = True) -> bytes:
    """A vector PDF with the given pages (zero pages gives a valid, empty document)."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", b""]
    objects[2] = (
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    kids = []
    for page in pages:
        stream = _content(page)
        filters = b""
        if compress:
            stream, filters = zlib.compress(stream), b" /Filter /FlateDecode"
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(stream), filters) + stream
                       + b"\nendstream")  # fmt: skip
        content_ref = len(objects)
        box = " ".join(_num(v) for v in (0, 0, page.width, page.height)).encode()
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [%s] /Rotate %d "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
            % (box, page.rotate, content_ref)
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    return _serialize(objects)


def slow_pdf(strokes: int = 20_000) -> bytes:
    """One Letter page of `strokes` crossing lines: ~130 KB that pdfium needs ~1.4 s to draw."""
    ops = b"".join(
        b"%d %d m %d %d l S\n" % (i % 600, (i * 7) % 780, (i * 13) % 600, (i * 3) % 780)
        for i in range(strokes)
    )
    stream = zlib.compress(ops)
    return _serialize([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R >>",
    ])  # fmt: skip


def hostile_pdf(pages: int = 3, strokes: int = 2_000_000) -> bytes:
    """`pages` Letter pages of `strokes` full-page strokes each: a few hundred KB (the strokes
    repeat, so they compress to little) that pdfium needs minutes per page to draw."""
    ops = b"0 0 m 612 792 l 612 0 m 0 792 l S\n" * (strokes // 2)
    stream = zlib.compress(ops, 9)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream
               + b"\nendstream"]  # fmt: skip
    kids = []
    for _ in range(pages):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R >>")
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), pages)
    return _serialize(objects)


def xfa_pdf() -> bytes:
    """One blank page whose AcroForm carries an XFA form (a dynamic one: NeedsRendering), as
    tax and government forms do; pdfium without XFA support draws the AcroForm only."""
    xdp = (
        b'<xdp:xdp xmlns:xdp="http://ns.adobe.com/xdp/"><template '
        b'xmlns="http://www.xfa.org/schema/xfa-template/3.3/"><subform name="form1"/>'
        b"</template></xdp:xdp>"
    )
    return _serialize([
        b"<< /Type /Catalog /Pages 2 0 R /AcroForm 5 0 R /NeedsRendering true >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Length 0 >>\nstream\n\nendstream",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R >>",
        b"<< /Fields [] /XFA 6 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(xdp) + xdp + b"\nendstream",
    ])  # fmt: skip


def zero_page_pdf() -> bytes:
    """A well-formed PDF with no pages."""
    return make_pdf([])


def corrupt_pdf() -> bytes:
    """Starts like a PDF, then nothing a reader can repair."""
    return (
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R"
        + bytes(range(256)) * 8
    )


def encrypted_pdf(user_password: str = "secret", owner_password: str = "owner") -> bytes:
    """A one-page PDF encrypted with RC4-128 (pypdf needs no extra package for it); with
    `user_password=""` it opens without a password, as permission-only PDFs do."""
    from pypdf import PdfReader, PdfWriter  # test-only dependency

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([text_page(["Secret page."])]))))
    writer.encrypt(user_password, owner_password, algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def multipage_tiff(sizes: Sequence[tuple[int, int]], mode: str = "RGB") -> bytes:
    """A TIFF with one frame per size ("RGB" or "L"): a grey a shade darker per frame, with a
    black square in its top-left corner."""
    frames = []
    for n, size in enumerate(sizes):
        shade = 250 - 30 * (n % 8)
        frame = Image.new(mode, size, (shade,) * len(mode))
        frame.paste((0,) * len(mode), (0, 0, max(1, size[0] // 10), max(1, size[1] // 10)))
        frames.append(frame)
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def deep_tiff(frames: int, *, deflate: bool = False, side: int = 8) -> bytes:
    """A TIFF of `frames` grey `side`-px square frames, frame k of shade k % 250, written by
    hand (Pillow's writer takes ~10 s for 2,000 frames); `deflate` compresses each strip
    (Adobe Deflate, decoded by libtiff)."""
    out = bytearray(b"II*\x00\x00\x00\x00\x00")  # the first IFD's offset is set below
    link = 4  # where the pointer to the next IFD goes
    for k in range(frames):
        strip = bytes([k % 250]) * (side * side)
        if deflate:
            strip = zlib.compress(strip)
        data_at = len(out)
        out += strip
        if len(out) % 2:
            out += b"\x00"
        entries = [
            (256, 3, side), (257, 3, side), (258, 3, 8), (259, 3, 8 if deflate else 1),
            (262, 3, 1), (273, 4, data_at), (277, 3, 1), (278, 3, side), (279, 4, len(strip)),
        ]  # fmt: skip
        out[link : link + 4] = len(out).to_bytes(4, "little")
        out += len(entries).to_bytes(2, "little")
        for tag, kind, value in entries:  # a SHORT sits left-justified: little-endian, as a LONG
            out += struct.pack("<HHII", tag, kind, 1, value)
        link = len(out)
        out += b"\x00\x00\x00\x00"
    return bytes(out)


# --- content ----------------------------------------------------------------------------------

_WORDS = (
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "this", "are", "or", "from", "at", "which", "but", "have", "an", "they", "were",
    "all", "there", "would", "their", "we", "been", "has", "when", "who", "will", "more", "no",
    "if", "out", "so", "said", "what", "up", "its", "about", "into", "than", "them", "can",
    "only", "other", "new", "some", "could", "time", "these", "two", "may", "then", "first",
    "any", "now", "such", "like", "our", "over", "even", "most", "made", "after", "also", "many",
    "before", "must", "through", "back", "years", "where", "much", "way", "well", "down",
    "should", "because", "each", "just", "those", "people", "how", "too", "little", "state",
    "good", "very", "make", "world", "still", "own", "see", "work", "long", "get", "here",
    "between", "both", "life", "being", "under", "never", "day", "same", "another", "know",
    "while", "last", "might", "great", "old", "year", "off", "come", "since", "against", "go",
    "came", "right", "used", "take", "report", "revenue", "analysis", "results", "method",
)  # fmt: skip


def office_file(*names: str, filler: int = 0) -> bytes:
    """A ZIP with these entries, in order; `filler` bytes of stored noise after the first."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for number, name in enumerate(names):
            archive.writestr(name, "<x/>")
            if number == 0 and filler:
                archive.writestr("media/noise.bin", os.urandom(filler))
    return buffer.getvalue()


def opendocument(kind: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # `mimetype` first and stored, as ODF says
        archive.writestr("mimetype", f"application/vnd.oasis.opendocument.{kind}")
        archive.writestr("content.xml", "<x/>")
    return buffer.getvalue()


DOCX = office_file("[Content_Types].xml", "_rels/.rels", "word/document.xml")


def filler(words: int, seed: int = 0) -> str:
    """Deterministic English-like text of `words` words."""
    # A linear congruential sequence: no `random` state shared with hypothesis or other tests.
    state = seed * 2654435761 + 1
    out = []
    for _ in range(words):
        state = (state * 1103515245 + 12345) % 2**31
        out.append(_WORDS[state % len(_WORDS)])
    return " ".join(out).capitalize() + "."


def text_page(
    paragraphs: Sequence[str], size: tuple[float, float] = LETTER, rotate: int = 0
) -> Page:
    return Page(size[0], size[1], tuple(paragraphs), rotate)


def text_heavy_pdf(pages: int = 20, size: tuple[float, float] = LETTER) -> bytes:
    """Dense pages like a report: a heading, full paragraphs at 9 pt and a 6x5 table each."""
    out = []
    for n in range(pages):
        blocks = [f"# Section {n + 1}"]
        blocks += [filler(90, seed=n * 10 + k) for k in range(6)]
        rows = "".join(
            "<tr>"
            + "".join(f"<td>{filler(2, seed=n + r * 7 + c)}</td>" for c in range(5))
            + "</tr>"
            for r in range(6)
        )
        blocks.append(f"<table>{rows}</table>")
        blocks += [filler(90, seed=n * 10 + k) for k in range(6, 9)]
        out.append(Page(size[0], size[1], tuple(blocks), font_size=9.0))
    return make_pdf(out)


def scanned_pdf(pages: int = 20, dpi: int = 200) -> bytes:
    """A scan-like PDF: each page one JPEG image of dense text (Letter at `dpi`), no text layer."""
    from PIL import ImageDraw, ImageFont  # only scans need drawing

    size = (int(8.5 * dpi), int(11 * dpi))
    font = ImageFont.load_default(size=dpi // 9)
    images = []
    for n in range(pages):
        image = Image.new("RGB", size, (250, 249, 245))
        draw = ImageDraw.Draw(image)
        y = dpi // 2
        for line in _wrap(" ".join(filler(60, seed=n * 40 + k) for k in range(40)), 80):
            if y > size[1] - dpi // 2:
                break
            draw.text((dpi // 2, y), line, fill=(20, 20, 20), font=font)
            y += dpi // 6
        images.append(image)
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], resolution=dpi)
    return buffer.getvalue()


def distinct_sizes(n: int, base: tuple[float, float] = LETTER) -> list[tuple[float, float]]:
    """`n` portrait page sizes whose rendered images (at 1024) all differ in width."""
    # 612 -> 791 px wide; each 2 points more adds ~2.6 px, so widths never collide.
    return [(base[0] + 2 * k, base[1]) for k in range(n)]


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    """A span-free HTML table as OCRFlux writes it (no whitespace between tags)."""
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


@dataclass(frozen=True)
class Scenario:
    """A document whose content crosses page breaks, with the model's answers for each stage.

    `pages`: each page's Markdown as the page path yields it (HTML tables; blocks separated by
    blank lines). `detect`: the merge-detect answer per consecutive page pair (0-based).
    `table_merges`: the table-merge answer for each (table 1, table 2) the toolkit would send,
    in the toolkit's order (a chain's later call sees the earlier result). `document_text`:
    the merged document, worked out by hand (the gateway's rule: the toolkit would leave a
    space after each merged table, see `ocrflux.format.merge`).
    """

    name: str
    pages: tuple[str, ...]
    detect: dict[tuple[int, int], str]
    table_merges: dict[tuple[str, str], str]
    document_text: str
    sizes: tuple[tuple[float, float], ...] = field(default=())

    def page_specs(self) -> list[Page]:
        sizes = self.sizes or tuple(distinct_sizes(len(self.pages)))
        return [
            Page(w, h, tuple(text.split("\n\n")))
            for (w, h), text in zip(sizes, self.pages, strict=True)
        ]

    def pdf(self) -> bytes:
        return make_pdf(self.page_specs())

    def page_answers(self, max_side: int = 1024) -> dict[str, list[str]]:
        """The fake vLLM's `page_answers`: rendered size -> the page's JSON answer."""
        return {
            spec.key(max_side): [page_json(text)]
            for spec, text in zip(self.page_specs(), self.pages, strict=True)
        }

    def detect_prompts(self) -> dict[str, str]:
        """Merge-detect prompt text -> the model's answer (for a fake that keys on prompts)."""
        from ocrflux.format.merge import page_elements

        return {
            build_element_merge_detect_prompt(
                page_elements(self.pages[p1]), page_elements(self.pages[p2])
            ): answer
            for (p1, p2), answer in self.detect.items()
        }

    def table_prompts(self) -> dict[str, str]:
        """Table-merge prompt text -> the model's answer."""
        return {
            build_html_table_merge_prompt(t1, t2): answer
            for (t1, t2), answer in self.table_merges.items()
        }


def page_json(markdown: str, language: str = "en") -> str:
    """The page answer OCRFlux-3B would give for this Markdown."""
    return orjson.dumps({
        "primary_language": language,
        "is_rotation_valid": True,
        "rotation_correction": 0,
        "is_table": markdown.startswith("<table>"),
        "is_diagram": False,
        "natural_text": markdown,
    }).decode()  # fmt: skip


_HEAD = ("Year", "Revenue", "Staff")
_T1 = table([("2019", "10", "4"), ("2020", "12", "5")], _HEAD)
_T2 = table([("2021", "15", "7"), ("2022", "19", "8")])
_T3 = table([("2023", "24", "9")])
_T12 = table([("2019", "10", "4"), ("2020", "12", "5"), ("2021", "15", "7"), ("2022", "19", "8")],
             _HEAD)  # fmt: skip
_T23 = table([("2021", "15", "7"), ("2022", "19", "8"), ("2023", "24", "9")])
_T123 = table(
    [("2019", "10", "4"), ("2020", "12", "5"), ("2021", "15", "7"), ("2022", "19", "8"),
     ("2023", "24", "9")],
    _HEAD,
)  # fmt: skip

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "hyphen",
            ("# Findings\n\nThe results of the experi-", "ment were clear.\n\nA new paragraph."),
            {(0, 1): "[(1, 0)]"},
            {},
            "# Findings\n\nThe results of the experi-ment were clear.\n\nA new paragraph.",
        ),
        Scenario(
            "cjk",
            ("# 报告\n\n这是一个跨页的段落，它在第一页结束于中", "间的位置继续。\n\n新的段落。"),
            {(0, 1): "[(1, 0)]"},
            {},
            "# 报告\n\n这是一个跨页的段落，它在第一页结束于中间的位置继续。\n\n新的段落。",
        ),
        Scenario(
            "space",
            ("The quick brown fox jumps over", "the lazy dog.\n\nEnd."),
            {(0, 1): "[(0, 0)]"},
            {},
            "The quick brown fox jumps over the lazy dog.\n\nEnd.",
        ),
        Scenario(
            "table_two_pages",
            (f"# Results\n\n{_T1}", f"{_T2}\n\nAfter the table."),
            {(0, 1): "[(1, 0)]"},
            {(_T1, _T2): _T12},
            f"# Results\n\n{_T12}\n\nAfter the table.",
        ),
        Scenario(
            "table_three_pages",
            (f"Before.\n\n{_T1}", _T2, f"{_T3}\n\nAfter."),
            {(0, 1): "[(1, 0)]", (1, 2): "[(0, 0)]"},
            # The toolkit merges the later pair first; the earlier call sees its result.
            {(_T2, _T3): _T23, (_T1, _T23): _T123},
            f"Before.\n\n{_T123}\n\nAfter.",
        ),
        Scenario(
            "no_merge",
            ("First page ends here.", "Second page starts anew."),
            {(0, 1): "[]"},
            {},
            "First page ends here.\n\nSecond page starts anew.",
        ),
    )
}

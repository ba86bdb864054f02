"""Write `examples/sample.pdf`: the one-page form the README's first curl converts.

    python scripts/make_sample.py            # (re)writes examples/sample.pdf

A scanned-looking page (bilevel, 150 dpi, US Letter) drawn with DejaVu Sans (Debian's
fonts-dejavu-core): a heading, a paragraph, a checkbox list (ticked, empty, crossed) and a
small ruled table. Deterministic: the same fonts and Pillow give the same bytes.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONTS = Path("/usr/share/fonts/truetype/dejavu")
OUT = Path(__file__).resolve().parent.parent / "examples" / "sample.pdf"
DPI = 150
SIZE = (1275, 1650)  # US Letter at 150 dpi

TITLE = "Site inspection report"
PARAGRAPH = [
    "The inspector walked the whole site on Monday morning.",
    "Every item below was checked in person, and the open",
    "actions are listed in the table at the end of the page.",
]
CHECKLIST = [
    ("tick", "Fire exits are clear"),
    ("empty", "Ladders are tagged"),
    ("cross", "First aid kit is stocked"),
]
TABLE = [
    ["Item", "Owner", "Due"],
    ["Fire drill", "J. Smith", "2024-05-01"],
    ["Signage", "A. Lee", "2024-06-15"],
]


def _box(draw: ImageDraw.ImageDraw, x: int, y: int, side: int, state: str) -> None:
    draw.rectangle((x, y, x + side, y + side), outline=0, width=3)
    if state == "tick":
        points = [(x + 0.2 * side, y + 0.55 * side), (x + 0.42 * side, y + 0.78 * side)]
        draw.line([*points, (x + 0.82 * side, y + 0.2 * side)], fill=0, width=4)
    elif state == "cross":
        draw.line((x + 7, y + 7, x + side - 7, y + side - 7), fill=0, width=4)
        draw.line((x + 7, y + side - 7, x + side - 7, y + 7), fill=0, width=4)


def draw_page() -> Image.Image:
    page = Image.new("L", SIZE, 255)
    draw = ImageDraw.Draw(page)
    body = ImageFont.truetype(str(FONTS / "DejaVuSans.ttf"), 30)
    bold = ImageFont.truetype(str(FONTS / "DejaVuSans-Bold.ttf"), 54)
    x, y = 120, 130
    draw.text((x, y), TITLE, font=bold, fill=0)
    y += 130
    for line in PARAGRAPH:
        draw.text((x, y), line, font=body, fill=0)
        y += 46
    y += 60
    for state, label in CHECKLIST:
        _box(draw, x, y + 2, 32, state)
        draw.text((x + 56, y), label, font=body, fill=0)
        y += 66
    y += 60
    widths, height = [380, 300, 300], 66
    xs = [x]
    for width in widths:
        xs.append(xs[-1] + width)
    for r, row in enumerate(TABLE):
        for c, cell in enumerate(row):
            draw.text((xs[c] + 18, y + r * height + 15), cell, font=body, fill=0)
    for r in range(len(TABLE) + 1):
        draw.line((xs[0], y + r * height, xs[-1], y + r * height), fill=0, width=3)
    for column_x in xs:
        draw.line((column_x, y, column_x, y + len(TABLE) * height), fill=0, width=3)
    return page


def sample_pdf() -> bytes:
    out = io.BytesIO()
    # Bilevel like a fax or office scan: a few KB instead of a greyscale page's ~90 KB.
    # A fixed date (Pillow writes the current one) keeps the file the same from run to run.
    fixed = time.gmtime(1704067200)  # 2024-01-01
    draw_page().point(lambda v: 255 if v > 160 else 0).convert("1").save(
        out, "PDF", resolution=DPI, title="Sample", creationDate=fixed, modDate=fixed
    )
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = sample_pdf()
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data):,} bytes)")


if __name__ == "__main__":
    main()

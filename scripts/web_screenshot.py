"""Re-make docs/web-page.png, the README's picture of the web page.

Starts the fake vLLM and the gateway on loopback (as the tests do), uploads a generated
two-page report in Debian's Chromium, and saves the page as a palette PNG (kept under 150 KB).
Run from the repository root with the test venv active: `python scripts/web_screenshot.py`.
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.documents.pdfs import Page, distinct_sizes, make_pdf, page_json, table  # noqa: E402
from tests.support import gateway_env, running_gateway, start_fake_vllm  # noqa: E402
from tests.web.test_page_browser import CHROMIUM, FLAGS  # noqa: E402

OUT = ROOT / "docs" / "web-page.png"
PAGES = (
    "# Annual report 2023\n\nRevenue grew in every region, led by the North, while staff "
    "costs stayed flat.\n\n"
    + table(
        [("North", "10.2", "12.8"), ("South", "7.1", "9.4"), ("West", "5.0", "5.6")],
        ("Region", "2022", "2023"),
    ),
    "## Outlook\n\nThe board expects growth to continue into 2024.",
)


def main() -> None:
    sizes = distinct_sizes(len(PAGES))
    specs = [
        Page(w, h, tuple(t.split("\n\n")), font_size=12)
        for (w, h), t in zip(sizes, PAGES, strict=True)
    ]
    fake = start_fake_vllm()
    try:
        fake.control(
            page_answers={s.key(): [page_json(t)] for s, t in zip(specs, PAGES, strict=True)},
            prompt_answers=[{"contains": ["Previous page:"], "answers": ["[]"]}],
        )
        with (
            running_gateway(gateway_env(fake.port)) as gateway,
            tempfile.TemporaryDirectory() as tmp,
        ):
            pdf = Path(tmp) / "annual-report.pdf"
            pdf.write_bytes(make_pdf(specs))
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=FLAGS
                )
                page = browser.new_page(viewport={"width": 1200, "height": 760})
                page.goto(gateway.url)
                page.set_input_files("#file", str(pdf))
                page.wait_for_selector("#status:has-text('Done')")
                page.wait_for_timeout(3000)  # the PDF viewer draws the page
                png = page.screenshot()
                browser.close()
    finally:
        fake.stop()
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64)
    OUT.parent.mkdir(exist_ok=True)
    image.save(OUT, optimize=True)
    print(f"{OUT.relative_to(ROOT)}: {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()

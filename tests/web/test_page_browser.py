"""The web page in a real browser: Playwright driving Debian's Chromium (never a downloaded
one) against the gateway and the fake vLLM on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from tests.documents.pdfs import Page as PdfPage
from tests.documents.pdfs import corrupt_pdf, distinct_sizes, make_pdf, page_json
from tests.support import FakeVLLMProcess, Process

CHROMIUM = "/usr/bin/chromium"  # Debian's package (apt-get install chromium)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000

TABLE = (
    "<table><tr><th>Region</th><th>Q1</th><th>Q2</th></tr>"
    "<tr><td>North</td><td>10</td><td>12</td></tr><tr><td>South</td><td>7</td><td>9</td></tr>"
    "</table>"
)
REPORT = f"# Quarterly report\n\nRevenue grew in every region.\n\n{TABLE}"
# What a hostile document could make the model write: each would set window.__pwned.
HOSTILE = (
    "## Notes\n\n<script>window.__pwned = 'script'</script>\n\n"
    "<img src=x onerror=\"window.__pwned = 'onerror'\">\n\n"
    "<a href=\"javascript:window.__pwned = 'link'\">a link</a> and "
    "[another](javascript:window.__pwned='markdown-link')\n\n"
    '<svg onload="window.__pwned = \'svg\'"></svg><iframe src="javascript:parent.__pwned=1">'
    "</iframe>\n\n- [√] checked\n- [ ] open"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], errors  # no script error on the page, whatever it showed


def two_page_pdf(fake: FakeVLLMProcess, tmp_path: Path, delay: float = 0.0) -> Path:
    """report.pdf: a table page and a page whose text tries to run script."""
    specs = [
        PdfPage(w, h, tuple(text.split("\n\n")))
        for (w, h), text in zip(distinct_sizes(2), (REPORT, HOSTILE), strict=True)
    ]
    answers = {
        spec.key(): [page_json(text)] for spec, text in zip(specs, (REPORT, HOSTILE), strict=True)
    }
    fake.control(
        page_answers=answers,
        page_delays={key: delay for key in answers},
        prompt_answers=[{"contains": ["Previous page:"], "answers": ["[]"]}],
    )
    path = tmp_path / "report.pdf"
    path.write_bytes(make_pdf(specs))
    return path


def record_statuses(page: Page) -> None:
    """Every text the status line shows, each change on its own (mutation records, not the
    line's text when the observer happens to run)."""
    page.evaluate(
        """() => {
        window.__statuses = [];
        new MutationObserver((records) => {
            for (const record of records)
                for (const node of record.addedNodes) window.__statuses.push(node.textContent);
        }).observe(document.getElementById("status"), {childList: true});
    }"""
    )


def wait_done(page: Page) -> None:
    page.wait_for_selector("#status:has-text('Done')")


def test_a_pdf_shows_each_page_beside_its_sanitised_markdown(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, page: Page, tmp_path: Path
) -> None:
    pdf = two_page_pdf(fake, tmp_path, delay=0.3)
    page.goto(ocrflux_gateway.url)
    record_statuses(page)
    page.set_input_files("#file", str(pdf))
    wait_done(page)

    # Progress came page by page from the stream, before the result.
    statuses: list[str] = page.evaluate("window.__statuses")
    assert "Read page 1 of 2…" in statuses and "Read page 2 of 2…" in statuses
    assert statuses.index("Read page 2 of 2…") < statuses.index("Done: 2 pages.")

    rows = page.locator("article.page")
    assert rows.count() == 2
    # Each page drawn by the browser's own PDF viewer, at its page.
    frames = [rows.nth(i).locator(".preview iframe").get_attribute("src") for i in range(2)]
    assert all(src and src.startswith("blob:") for src in frames)
    assert [src.split("#")[1].split("&")[0] for src in frames if src] == ["page=1", "page=2"]

    # The table is a table.
    table = rows.nth(0).locator(".markdown table")
    assert table.count() == 1
    assert table.locator("th").all_inner_texts() == ["Region", "Q1", "Q2"]
    assert table.locator("tr").nth(1).locator("td").all_inner_texts() == ["North", "10", "12"]
    assert rows.nth(0).locator(".markdown h1").inner_text() == "Quarterly report"

    # Nothing in the model's text ran, and nothing that could run is left in the page.
    hostile = rows.nth(1).locator(".markdown")
    page.wait_for_timeout(500)  # an image error or a frame would have fired by now
    assert page.evaluate("window.__pwned") is None
    assert hostile.locator("script, img, svg, iframe, [onerror], [onload]").count() == 0
    hrefs = hostile.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert len(hrefs) == 2 and not any(h and "javascript" in h.lower() for h in hrefs)
    assert "a link" in hostile.inner_text()
    # OCRFlux's checkboxes stay the text they are.
    assert hostile.locator("li").all_inner_texts() == ["[√] checked", "[ ] open"]

    page.wait_for_timeout(1500)  # let the PDF viewer draw the first page for the artefact
    screenshot = tmp_path / "web-page.png"
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000


def test_copy_and_download_give_the_merged_markdown(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, page: Page, tmp_path: Path
) -> None:
    pdf = two_page_pdf(fake, tmp_path)
    page.goto(ocrflux_gateway.url)
    page.set_input_files("#file", str(pdf))
    wait_done(page)
    expected = f"{REPORT}\n\n{HOSTILE}"
    page.click("#copy")
    page.wait_for_selector("#status:has-text('Markdown copied.')")
    assert page.evaluate("navigator.clipboard.readText()") == expected
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "report.md"
    assert Path(download.value.path()).read_text(encoding="utf-8") == expected
    page.check("#source")
    assert page.locator("article.page .source").first.inner_text() == REPORT


def test_the_page_asks_for_nothing_that_is_missing(ocrflux_gateway: Process, page: Page) -> None:
    statuses: dict[str, int] = {}
    page.on("response", lambda response: statuses.setdefault(response.url, response.status))
    page.goto(ocrflux_gateway.url)
    page.wait_for_load_state("networkidle")
    assert {url: status for url, status in statuses.items() if status != 200} == {}
    assert f"{ocrflux_gateway.url}/ui/icon.svg" in statuses


def test_an_image_is_shown_as_itself(
    ocrflux_gateway: Process, fake: FakeVLLMProcess, page: Page, tmp_path: Path
) -> None:
    fake.control(page_answers={"768x1024": [page_json("Scanned words.")]})
    path = tmp_path / "scan.png"
    Image.new("RGB", (600, 800), "white").save(path)
    page.goto(ocrflux_gateway.url)
    page.set_input_files("#file", str(path))
    wait_done(page)
    preview = page.locator("article.page .preview img")
    assert (preview.get_attribute("src") or "").startswith("blob:")
    assert page.locator("article.page .markdown").inner_text() == "Scanned words."


def test_api_errors_are_shown_in_words(
    ocrflux_gateway: Process, page: Page, tmp_path: Path
) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(corrupt_pdf())
    page.goto(ocrflux_gateway.url)
    page.set_input_files("#file", str(path))
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "The gateway refused the document: the PDF could not be read" in error.inner_text()
    assert "(HTTP 400)" in error.inner_text()


def test_a_gateway_with_keys_asks_for_one_and_keeps_it_for_the_session(
    make_gateway: Any, fake: FakeVLLMProcess, page: Page, tmp_path: Path
) -> None:
    gateway = make_gateway(api_keys="s3cret")
    pdf = two_page_pdf(fake, tmp_path)
    page.goto(gateway.url)
    page.set_input_files("#file", str(pdf))
    page.locator("#key-form").wait_for(state="visible")
    page.fill("#key", "wrong")
    page.click("#key-form button")
    page.wait_for_selector("#status:has-text('That API key was refused')")
    page.fill("#key", "s3cret")
    page.click("#key-form button")
    wait_done(page)
    assert page.evaluate("sessionStorage.getItem('ocrflux-api-key')") == "s3cret"
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""


def test_the_screenshot_in_the_readme_is_small() -> None:
    shot = Path(__file__).resolve().parents[2] / "docs" / "web-page.png"
    assert shot.exists() and shot.stat().st_size < 150_000
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.width >= 800

"""`GET /`: the page's files, its security headers, and the WEB_UI switch (in-process app)."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from ocrflux.app import create_app
from ocrflux.routes.web import FILES, WEB_ROOT
from ocrflux.settings import Settings


async def get(path: str, **settings: object) -> httpx.Response:
    app = create_app(Settings(**settings))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return await client.get(path)


class Tags(HTMLParser):
    """Every start tag of a document with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for item in policy.split(";"):
        name, *values = item.split()
        parsed[name] = values
    return parsed


async def test_the_page_comes_with_a_strict_content_security_policy() -> None:
    response = await get("/", api_keys="secret")  # the page itself needs no key
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no inline script, no eval, no other host
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["require-trusted-types-for"] == ["'script'"]
    values = [value for listed in policy.values() for value in listed]
    assert not any("unsafe" in value or "http" in value or value == "*" for value in values)
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_page_has_no_inline_code_and_loads_only_its_own_files() -> None:
    html = (await get("/")).text
    parser = Tags()
    parser.feed(html)
    referenced = []
    for tag, attrs in parser.tags:
        assert not any(name.startswith("on") or name == "style" for name in attrs), (tag, attrs)
        if tag == "script":
            assert attrs.get("src"), "an inline script"
            referenced.append(attrs["src"])
        if tag == "link":
            referenced.append(attrs["href"])
    assert "<style" not in html
    assert sorted(referenced) == sorted(f"ui/{name}" for name in FILES)
    for src in referenced:  # relative, so the page also works behind a path prefix
        assert src is not None
        response = await get("/" + src)
        assert response.status_code == 200, src
        assert response.headers["content-type"] == FILES[src.removeprefix("ui/")]
        assert "content-security-policy" in response.headers


@pytest.mark.parametrize(
    "path", ["/ui/index.html", "/ui/../settings.py", "/ui/vendor/README.md", "/ui/%2e%2e/app.py"]
)
async def test_only_the_pages_files_are_served(path: str) -> None:
    response = await get(path)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


async def test_web_ui_false_turns_the_page_off() -> None:
    for path in ("/", "/ui/app.js"):
        response = await get(path, web_ui=False)
        assert response.status_code == 404
        assert "WEB_UI=false" in response.json()["error"]["message"]


async def test_the_page_declares_its_icon_and_favicon_ico_is_served() -> None:
    parser = Tags()
    parser.feed((await get("/")).text)
    icons = [attrs for tag, attrs in parser.tags if tag == "link" and attrs.get("rel") == "icon"]
    assert icons == [{"rel": "icon", "href": "ui/icon.svg", "type": "image/svg+xml"}]
    icon = await get("/ui/icon.svg")
    assert (icon.status_code, icon.headers["content-type"]) == (200, "image/svg+xml")
    assert icon.content.startswith(b"<svg") and len(icon.content) < 1024
    # Browsers and bookmark tools ask for /favicon.ico whatever the page says.
    favicon = await get("/favicon.ico")
    assert (favicon.status_code, favicon.headers["content-type"]) == (200, "image/svg+xml")
    assert favicon.content == icon.content
    assert favicon.headers["cache-control"] == "no-cache"
    off = await get("/favicon.ico", web_ui=False)
    assert off.status_code == 404


def test_vendored_libraries_are_the_registry_files_named_in_their_readme() -> None:
    readme = (WEB_ROOT / "vendor" / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", readme, re.MULTILINE))
    vendored = {p.name for p in (WEB_ROOT / "vendor").glob("*.js")}
    assert set(rows) == vendored == {Path(name).name for name in FILES if "vendor/" in name}
    for name, digest in rows.items():
        assert hashlib.sha256((WEB_ROOT / "vendor" / name).read_bytes()).hexdigest() == digest
        assert (WEB_ROOT / "vendor" / name.replace(".umd.js", ".LICENSE").replace(
            ".min.js", ".LICENSE")).exists()  # fmt: skip

"""`GET /`: the web page (static files from `ocrflux/web/`, a client of `POST /v1/ocr`).

Every file goes out with a strict Content-Security-Policy: scripts only from this origin and
never inline, no plugins, nothing from other hosts (model output is untrusted; the page
sanitises it too), and Trusted Types so only DOMPurify's output can become HTML. `blob:` is
allowed for the user's own file: an `<img>`, or a frame for the browser's PDF viewer.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import Response

from ocrflux.errors import APIError
from ocrflux.routes.common import SettingsDep

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"

# The page's files and their types: nothing else under ocrflux/web/ is served.
FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
    "style.css": "text/css; charset=utf-8",
    "vendor/marked.umd.js": "text/javascript; charset=utf-8",
    "vendor/purify.min.js": "text/javascript; charset=utf-8",
}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "frame-src blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types dompurify",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

web = APIRouter(include_in_schema=False)


@cache
def _read(name: str) -> bytes:
    # A few tens of KB, read once per process.
    return (WEB_ROOT / name).read_bytes()


def _serve(name: str, media_type: str, enabled: bool) -> Response:
    if not enabled:
        raise APIError(404, "the web page is turned off (WEB_UI=false)", code="not_found")
    return Response(_read(name), media_type=media_type, headers=HEADERS)


@web.get("/")
async def page(settings: SettingsDep) -> Response:
    return _serve("index.html", "text/html; charset=utf-8", settings.web_ui)


@web.get("/favicon.ico")
async def favicon(settings: SettingsDep) -> Response:
    """The page's icon where browsers and bookmark tools look without reading the page."""
    return _serve("icon.svg", FILES["icon.svg"], settings.web_ui)


@web.get("/ui/{name:path}")
async def asset(name: str, settings: SettingsDep) -> Response:
    media_type = FILES.get(name)
    if media_type is None:
        raise APIError(404, f"no such file: /ui/{name}", code="not_found")
    return _serve(name, media_type, settings.web_ui)

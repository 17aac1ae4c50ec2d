"""The therapist review page, served by the service itself at ``/``.

Everything the page needs ships in ``api/web/static`` (hospital networks are closed: no CDN,
no web fonts, no external requests). The page is static: it holds no patient data and reads
everything from ``/api/v1`` with the sign-in cookie (:mod:`api.web_sessions`), so a signed-out
browser sees the sign-in form and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "install_web_ui"]

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Same-origin everything; no inline script or style, so injected markup cannot run.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_router = APIRouter(include_in_schema=False)


@_router.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    """The single page of the review UI."""
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers=_SECURITY_HEADERS)


def install_web_ui(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/ui``."""
    app.include_router(_router)
    app.mount("/ui", StaticFiles(directory=STATIC_DIR), name="ui")

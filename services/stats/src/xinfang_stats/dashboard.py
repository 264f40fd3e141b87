"""The dashboard for bureau staff: `GET /` (Simplified Chinese; `?lang=en` for English), static files under
`/static/` from the service's own package (ECharts and the Sichuan map bundled at install time, no CDN: a
government intranet reaches none), under a content security policy of `self` only."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


LANGUAGES = ("zh-CN", "en")  # static/i18n/<lang>.json; the page itself is written in the first


def page(lang: str | None) -> str:
    """index.html in `lang` (`?lang=en`; anything else: Simplified Chinese): its <html lang>, which app.js
    starts from (and the page's text is then set from static/i18n/<lang>.json)."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    if lang in LANGUAGES and lang != LANGUAGES[0]:
        html = html.replace(f'<html lang="{LANGUAGES[0]}">', f'<html lang="{lang}">', 1)
    return html


def mount_dashboard(api: FastAPI) -> None:
    @api.middleware("http")
    async def secure(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        if request.url.path == "/" or request.url.path.startswith("/static/"):
            response.headers.update(SECURITY_HEADERS)
        return response

    @api.get("/", include_in_schema=False)
    async def index(lang: str | None = None) -> HTMLResponse:
        return HTMLResponse(page(lang), headers={"Cache-Control": "no-cache"})

    api.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

"""The dashboard for bureau staff: `GET /` (Simplified Chinese; `?lang=en` for English), static files under
`/static/` from the service's own package (ECharts and the Sichuan map bundled at install time, no CDN: a
government intranet reaches none), under a content security policy of `self` only."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.staticfiles import StaticFiles

from xinfang_shared.contracts.labels import labels

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
DOMAIN_TABLES = ("channel", "office", "category", "city", "unit")  # the codes' names, from shared/labels


def strings(lang: str) -> dict[str, object]:
    """What app.js loads as /static/i18n/<lang>.json: the page's own words (static/i18n) and the names of the
    bureau's codes that every page shares (xinfang_shared.contracts.labels)."""
    own: dict[str, object] = json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    shared = labels(lang)
    return own | {table: shared[table] for table in DOMAIN_TABLES}


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

    @api.get("/static/i18n/{lang}.json", include_in_schema=False)
    async def words(lang: str) -> JSONResponse:
        if lang not in LANGUAGES:
            raise HTTPException(404, "no such language")
        return JSONResponse(strings(lang), headers={"Cache-Control": "no-cache"})

    api.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

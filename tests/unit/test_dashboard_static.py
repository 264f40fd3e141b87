"""The stats dashboard's static files (services/stats/src/xinfang_stats/static): what the content security policy
forbids is not in them, both languages label every code the API can answer with, and `GET /` serves the page in
the language asked for under the security headers. (The page itself, in a browser: tests/integration/
test_dashboard.py.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import httpx
from fastapi import FastAPI

from xinfang_shared.contracts.reference import CITIES, UNITS, Category, Channel, Office
from xinfang_stats.dashboard import CSP, STATIC, mount_dashboard
from xinfang_stats.dashboard import strings as served_strings

LANGS = ("zh-CN", "en")


def strings(lang: str) -> dict[str, Any]:
    return served_strings(lang)


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.script_text.append(data)


def parsed() -> Page:
    page = Page()
    page.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    return page


def test_the_page_has_nothing_inline_that_the_policy_blocks() -> None:
    page = parsed()
    assert not page.script_text, "inline script"
    for tag, attrs in page.tags:
        assert "style" not in attrs, f"<{tag} style=...>"
        assert tag != "style", "<style> element"
        assert not any(name.startswith("on") for name in attrs), f"<{tag}> with an inline event handler"
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not re.match(r"^(https?:)?//", value), f"<{tag} {name}={value}>: only the service's own files"
    scripts = [attrs.get("src") for tag, attrs in page.tags if tag == "script"]
    # Relative: the console serves the same page under /dashboard/.
    assert scripts == ["static/vendor/echarts.min.js", "static/app.js"]
    app = (STATIC / "app.js").read_text(encoding="utf-8")
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", app), "text is set as text"
    assert "setAttribute('style'" not in app


def test_both_languages_have_the_same_strings_and_label_every_code() -> None:
    zh, en = strings("zh-CN"), strings("en")
    assert zh["lang"] == "zh-CN" and en["lang"] == "en"
    for section in ("ui", "channel", "office", "category", "city", "unit"):
        assert set(zh[section]) == set(en[section]), section
    assert set(zh["channel"]) == {c.value for c in Channel}
    assert set(zh["office"]) == {o.value for o in Office}
    assert set(zh["category"]) == {c.value for c in Category}
    assert set(zh["unit"]) == set(UNITS)
    assert set(zh["city"]) == {unit.removeprefix("city-") for unit in CITIES}
    assert len(zh["city"]) == 21
    used = {
        attrs[name] for _, attrs in parsed().tags for name in ("data-i18n", "data-i18n-aria-label") if attrs.get(name)
    }
    app = (STATIC / "app.js").read_text(encoding="utf-8")
    used |= set(re.findall(r"\bt\('([a-zA-Z.]+)'", app))
    assert used - set(zh["ui"]) == set(), "strings the page uses that i18n/*.json lacks"


async def test_the_page_is_served_in_the_language_asked_for_under_the_policy() -> None:
    api = FastAPI()
    mount_dashboard(api)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as client:
        for query, lang in (("", "zh-CN"), ("?lang=en", "en"), ("?lang=zh-CN", "zh-CN"), ("?lang=<x>", "zh-CN")):
            response = await client.get(f"/{query}")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["content-security-policy"] == CSP
            assert response.headers["x-content-type-options"] == "nosniff"
            assert f'<html lang="{lang}">' in response.text
        for path in ("/static/app.js", "/static/app.css", "/static/i18n/en.json"):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-security-policy"] == CSP

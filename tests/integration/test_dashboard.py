"""The stats dashboard (`GET /` on stats) in a real browser: Debian's Chromium driven by Playwright, against the
real stats process on the real Kafka broker and a private PostgreSQL database.

A known set of matters goes straight onto stats' input topics (registrations, routings, status changes,
deadlines; a burst of 50 in one hour in Liangshan, which the surge watch turns into an open alert). Once the API
shows them, the page must: ask for the operator key (and again after a wrong one), load with no console error
and no content-security-policy violation, request nothing but the service's own files and API (the key never in
a URL), and show exactly the figures of that set, the API's own, in the KPI tiles, the unit table, the map (the
chart's data and the city table) and the alerts; follow the filters without a reload; switch to English and
back. Full-page screenshots are kept (tmp_path, and a stable copy in .local/artifacts/, see ARTIFACTS).
A second test takes the vendor files away: the page says so and still shows every figure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    Route,
    async_playwright,
    expect,
)
from playwright.async_api import Error as PlaywrightError

from tests import factories
from tests.integration.conftest import ROOT
from tests.integration.processes import ServiceProcess, log_errors, private_database, start_fuzzed
from xinfang_shared.contracts.events import (
    DeadlineEvent,
    Event,
    MatterRegisteredV2,
    MatterStatus,
    MatterStatusChanged,
)
from xinfang_shared.contracts.reference import Category, Channel, DeadlineState, DeadlineType, Office
from xinfang_shared.contracts.topics import DEADLINES_EVENTS, MATTERS_REGISTERED_V2, MATTERS_STATUS
from xinfang_shared.tracking import new_tracking_code
from xinfang_shared.workdays import CHINA
from xinfang_stats.app import MIGRATIONS
from xinfang_stats.dashboard import CSP, STATIC, strings

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
VENDOR = STATIC / "vendor"
ARTIFACTS = ROOT / ".local" / "artifacts"
OPERATOR_KEY = "dashboard-operator-" + uuid.uuid4().hex
PETITIONER = "测试信访人丙"  # every matter's petitioner: never on the page
BURST_CITY, BURST = "5134", 50  # matters in one hour in Liangshan (one a minute): a surge within minutes
CALM_MOST = 4  # matters a category may have in a surge window without alarming (the detector's min_observed is 5)
STRINGS = {lang: strings(lang) for lang in ("zh-CN", "en")}
TEXTS = {
    Category.LABOR: ("农民工工资被拖欠", "某建筑公司拖欠农民工工资三个月，多次讨薪无果。"),
    Category.HOUSING: ("反映拆迁补偿标准过低", "旧城改造拆迁补偿标准过低，要求重新评估。"),
    Category.ENVIRONMENT: ("工厂夜间排放废气", "某化工厂夜间偷排废气，气味刺鼻。"),
}


def beijing_now() -> datetime:
    return datetime.now(CHINA)


# --- the known set ------------------------------------------------------------------------------------------


@dataclass
class Matter:
    at: datetime  # registered
    channel: Channel
    region: str | None  # 6-digit code
    category: Category
    office: Office | None = None  # routed to; None: not routed (a repeat)
    unit: str | None = None  # transferred to
    accepted: bool = False
    concluded: bool = False
    overdue: bool = False
    late: bool = False  # a deadline met after it expired
    duplicate_of: uuid.UUID | None = None
    matter_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def day(self) -> date:
        return self.at.astimezone(CHINA).date()

    @property
    def city(self) -> str | None:
        return self.region[:4] if self.region else None

    @property
    def on_time(self) -> bool:
        return self.concluded and not self.overdue and not self.late


def known_set(now: datetime) -> tuple[list[Matter], list[Matter]]:
    """(first, then): what is published first (outside and inside the default 30 days, and the burst in the last
    complete Beijing hour), and then (today's, the last registered now: it moves the surge watch's event time
    past the burst's hour, which is then checked with every matter of it folded)."""
    b = now.astimezone(CHINA)
    burst_hour = b.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    midnight = b.replace(hour=0, minute=0, second=0, microsecond=0)
    C, Of = Channel, Office

    def ago(days: int, *args: Any, flags: str = "") -> Matter:
        return Matter(b - timedelta(days=days), *args, **dict.fromkeys(flags.split(), True))

    earlier = [
        ago(50, C.VISIT, "510104", Category.HOUSING, Of.RECEPTION, "dept-housing", flags="overdue"),
        ago(
            45,
            C.LETTER,
            "510104",
            Category.LAND,
            Of.LETTERS_2,
            "dept-natural-resources",
            flags="accepted concluded overdue",
        ),
        ago(20, C.VISIT, "510104", Category.LAND, Of.RECEPTION, "city-5101"),
        ago(15, C.LETTER, "510703", Category.HEALTH, Of.LETTERS_2, "dept-health", flags="accepted concluded"),
        ago(12, C.ONLINE, None, Category.OTHER, Of.ONLINE, None),  # awaiting assignment
        ago(10, C.LETTER, "513301", Category.RURAL, Of.LETTERS_2, "city-5133"),
        ago(8, C.ONLINE, "513401", Category.ENVIRONMENT, Of.ONLINE, "city-5134", flags="accepted concluded overdue"),
        ago(6, C.MAILBOX, "510104", Category.EDUCATION, Of.LETTERS_1, "dept-education", flags="accepted overdue"),
        ago(5, C.VISIT, "510502", Category.HOUSING, Of.RECEPTION, "dept-housing", flags="accepted concluded"),
        ago(4, C.ONLINE, "510107", Category.LABOR, Of.ONLINE, "city-5101", flags="accepted concluded late"),
        ago(3, C.LETTER, "510104", Category.LABOR, Of.LETTERS_2, "city-5101", flags="accepted concluded"),
    ]
    span = (b - midnight).total_seconds()
    at = [midnight + timedelta(seconds=span * f) for f in (0.1, 0.25, 0.4, 0.55, 0.7, 0.85)]
    first = Matter(at[0], C.LETTER, "510104", Category.LABOR, Of.LETTERS_2, "city-5101", accepted=True, concluded=True)
    today = [
        first,
        Matter(at[1], C.VISIT, "510104", Category.HOUSING, Of.RECEPTION, "dept-housing"),
        Matter(at[2], C.ONLINE, "510107", Category.LABOR, Of.ONLINE, "city-5101", accepted=True),
        Matter(at[3], C.MAILBOX, "510703", Category.LAND, Of.LETTERS_1, "dept-natural-resources"),
        Matter(at[4], C.LETTER, None, Category.OTHER, Of.LETTERS_2, None),
        Matter(at[5], C.LETTER, "510104", Category.LABOR, duplicate_of=first.matter_id),  # a repeat: not routed
        Matter(b, C.ONLINE, "510302", Category.TRANSPORT, Of.ONLINE, "dept-transport"),
    ]
    # No category may surge: early in the Beijing day today's matters share the burst's longest window (PT3H),
    # so the burst fills each category only up to what today's matters leave of CALM_MOST.
    window = (burst_hour - timedelta(hours=2), burst_hour + timedelta(hours=1))
    room = dict.fromkeys(Category, CALM_MOST)
    for m in today:
        if window[0] <= m.at < window[1]:
            room[m.category] -= 1
    categories = [c for turn in range(CALM_MOST) for c in Category if room[c] > turn]
    assert len(categories) >= BURST, "the burst cannot spread over the categories without one surging"
    burst = [
        Matter(
            burst_hour + timedelta(minutes=1, seconds=i * 60),
            C.ONLINE,
            "513401" if i % 2 else "513422",
            categories[i],
            Of.ONLINE,
            "city-5134",
        )
        for i in range(BURST)
    ]
    return earlier + burst, today


def events(m: Matter, now: datetime) -> list[tuple[str, Event]]:
    """The matter's events as the producing services would publish them (the petitioner made up)."""

    def when(minutes: float) -> datetime:
        return min(m.at + timedelta(minutes=minutes), now)

    title, content = TEXTS.get(m.category, (f"关于{m.category.value}事项的反映", "请求有关部门依法处理。"))
    overrides: dict[str, Any] = {
        "channel": m.channel.value,
        "submitted_at": m.at.isoformat(),
        "petitioner": {"name": PETITIONER, "id_number": factories.id_number(), "phone": factories.mobile()},
        "location": {"region_code": m.region, "detail": "某街道"} if m.region else None,
        "category": m.category.value,
        "title": title,
        "content": content,
    }
    if m.channel == Channel.VISIT:
        overrides["visit"] = {"place": "chengdu"}
    if m.channel == Channel.MAILBOX:
        overrides["mailbox"] = "governor"
    registered: MatterRegisteredV2 = factories.registration(
        factories.submission(random.Random(), **overrides),
        matter_id=m.matter_id,
        tracking_code=new_tracking_code(),
        registered_at=m.at,
        duplicate_of=m.duplicate_of,
    )
    assert (registered.location is None) == (m.region is None)
    out: list[tuple[str, Event]] = [(MATTERS_REGISTERED_V2.name, registered)]
    S = MatterStatus

    def status(status: MatterStatus, previous: MatterStatus, at: datetime, action: str) -> None:
        out.append(
            (
                MATTERS_STATUS.name,
                MatterStatusChanged(
                    matter_id=m.matter_id,
                    status=status,
                    previous_status=previous,
                    unit=m.unit,
                    at=at,
                    action=action,
                    office=m.office,
                    # The change a matter is routed by carries its routing (stats reads it there).
                    category=m.category if action == "routed" else None,
                    rule="test-dashboard" if action == "routed" else None,
                ),
            )
        )

    def deadline(kind: DeadlineType, state: DeadlineState, at: datetime, on_time: bool | None = None) -> None:
        out.append(
            (
                DEADLINES_EVENTS.name,
                DeadlineEvent(
                    matter_id=m.matter_id,
                    deadline=kind,
                    state=state,
                    due_at=at,
                    unit=m.unit,
                    at=at,
                    office=m.office,
                    on_time=on_time,
                ),
            )
        )

    if m.duplicate_of:
        status(S.DUPLICATE, S.REGISTERED, when(0.5), "registered")
        return out
    assert m.office is not None
    if m.unit is None:
        status(S.AWAITING_ASSIGNMENT, S.REGISTERED, when(1), "routed")
        return out
    status(S.TRANSFERRED, S.REGISTERED, when(1), "routed")
    if m.accepted:
        status(S.ACCEPTED, S.TRANSFERRED, when(2), "accepted")
        deadline(DeadlineType.ACCEPTANCE, DeadlineState.MET, when(2), on_time=True)
    if m.overdue:
        deadline(DeadlineType.HANDLING, DeadlineState.OVERDUE, when(3))
    if m.concluded:
        status(S.CONCLUDED, S.ACCEPTED, when(4), "concluded")
        if not m.overdue:
            deadline(DeadlineType.HANDLING, DeadlineState.MET, when(4), on_time=not m.late)
    return out


# --- what the figures must be, by the definitions (figures.py) ------------------------------------------------


def summary(matters: list[Matter], start: date, end: date) -> dict[str, Any]:
    chosen = [m for m in matters if start <= m.day <= end]
    concluded = sum(m.concluded for m in chosen)
    return {
        "registered": len(chosen),
        "concluded": concluded,
        "overdue": sum(m.overdue for m in chosen),
        "on_time_rate": round(sum(m.on_time for m in chosen) / concluded, 4) if concluded else None,
    }


def by_city(matters: list[Matter], start: date, end: date) -> Counter[str]:
    return Counter(m.city for m in matters if start <= m.day <= end and m.city)


def units(matters: list[Matter], start: date, end: date) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for m in matters:
        if m.unit is None or not start <= m.day <= end:
            continue
        u = found.setdefault(m.unit, {"unit": m.unit, "transferred": 0, "open": 0, "overdue": 0, "c": 0, "ok": 0})
        u["transferred"] += 1
        u["open"] += not m.concluded
        u["overdue"] += m.overdue
        u["c"] += m.concluded
        u["ok"] += m.on_time
    rows = [
        {
            "unit": u["unit"],
            "transferred": u["transferred"],
            "open": u["open"],
            "overdue": u["overdue"],
            "concluded": u["c"],
            "on_time_rate": round(u["ok"] / u["c"], 4) if u["c"] else None,
        }
        for u in found.values()
    ]
    return sorted(rows, key=lambda u: (-u["transferred"], u["unit"]))


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


# --- the service, fed ---------------------------------------------------------------------------------------


@dataclass
class Stats:
    process: ServiceProcess
    url: str
    matters: list[Matter]
    today: date  # Beijing, when the set was made

    async def get(self, path: str, **params: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            response = await client.get(path, params=params, headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
            response.raise_for_status()
            return response.json()


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 90.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not in {timeout:.0f} s: {what}")
        await asyncio.sleep(0.5)


async def publish(bootstrap: str, matters: list[Matter], now: datetime) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for m in matters:
            for topic, event in events(m, now):
                await producer.send(topic, event.model_dump_json().encode(), key=str(m.matter_id).encode())
        await producer.flush()
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
async def stats(
    stack: dict[str, str], bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stats]:
    missing = [file for file in ("echarts.min.js", "sichuan.json") if not (VENDOR / file).is_file()]
    if missing:
        pytest.fail(
            f"the dashboard's vendor files {missing} are not in {VENDOR}: deploy/local/install.sh installs them"
            " (npm ci in tools/dashboard, then tools/dashboard/vendor.cjs)"
        )
    async with private_database(stack["DATABASE_URL"]) as database:
        process = await start_fuzzed(
            "stats",
            database=database,
            bootstrap=bootstrap,
            migrations=Path(MIGRATIONS),
            log=tmp_path_factory.mktemp("dashboard") / "stats.log",
            env={
                "ENVIRONMENT": "test",
                "OPERATOR_API_KEY": OPERATOR_KEY,
                "SURGE_CHECK_S": "1",
                "SURGE_LATENESS_S": "0",
            },
        )
        try:
            now = beijing_now()
            first, then = known_set(now)
            service = Stats(process, f"http://127.0.0.1:{process.port}", first + then, now.astimezone(CHINA).date())
            longest = {"from": (service.today - timedelta(days=59)).isoformat(), "to": service.today.isoformat()}

            async def registered() -> int:
                rows = (await service.get("/v1/stats/summary", group_by="channel", **longest))["rows"]
                return sum(r["registered"] for r in rows)

            async def first_shown() -> bool:
                return await registered() >= len(first)

            # The burst folded before anything later is registered: its hour is checked with all of it.
            await publish(bootstrap, first, now)
            await until(first_shown, "the first matters in the figures")
            await publish(bootstrap, then, now)
            expected = units(service.matters, service.today - timedelta(days=59), service.today)

            seen: dict[str, Any] = {}

            async def complete() -> bool:
                seen["units"] = (await service.get("/v1/stats/units", **longest, limit=100))["units"]
                seen["alerts"] = await service.get("/v1/stats/alerts", state="open")
                return seen["units"] == expected and any(a["region_code"] == BURST_CITY for a in seen["alerts"])

            try:
                await until(complete, "every matter folded, and the Liangshan surge alert open", timeout=180)
            except AssertionError as exc:  # say which half is missing, and how
                raise AssertionError(
                    f"{exc}; units as expected: {seen.get('units') == expected}; open alerts: {seen.get('alerts')};"
                    f" units differing: {[u for u in seen.get('units', []) if u not in expected][:5]}"
                    f" vs {[u for u in expected if u not in seen.get('units', [])][:5]}"
                ) from exc
            yield service
        finally:
            process.stop()
    errors = log_errors(process.log)
    assert not errors, errors[:3]


# --- the browser --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM} (set CHROMIUM to another path): deploy/local/install.sh installs"
            " Debian's chromium and fonts-noto-cjk (Playwright downloads no browser here)"
        )
    # A page's refresh is a dozen API calls: on this shared 2-core machine under the whole suite, 5 s is short.
    expect.set_options(timeout=15_000)
    playwright: Playwright
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Watched:
    page: Page
    problems: list[str]  # console errors and warnings, page errors, CSP violations
    requests: list[str]
    api: list[dict[str, str]]  # the API's answers the page got (to look for personal data)


async def open_page(browser: Browser, url: str) -> Watched:
    # The browser in New York: the page must count Beijing days itself.
    context = await browser.new_context(
        locale="zh-CN", timezone_id="America/New_York", viewport={"width": 1440, "height": 1000}
    )
    page = await context.new_page()
    watched = Watched(page, [], [], [])

    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            watched.problems.append(f"console {message.type}: {message.text} ({message.location})")

    page.on("console", console)
    page.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
    page.on("request", lambda request: watched.requests.append(request.url))

    async def answered(response: Response) -> None:
        if "/v1/stats/" in response.url and response.ok:
            with contextlib.suppress(PlaywrightError):  # aborted by a newer refresh, or the page went on
                watched.api.append({"url": response.url, "body": await response.text()})

    page.on("response", answered)
    await page.add_init_script(
        "document.addEventListener('securitypolicyviolation', (e) => console.error("
        "'CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    response = await page.goto(url)
    assert response is not None and response.ok
    assert response.headers["content-security-policy"] == CSP
    return watched


def ui(lang: str, key: str, **values: Any) -> str:
    text: str = STRINGS[lang]["ui"][key]
    for name, value in values.items():
        text = text.replace(f"{{{name}}}", str(value))
    return text


def name(lang: str, kind: str, code: str) -> str:
    return str(STRINGS[lang][kind][code])


async def kpis(page: Page, today: str, week: str, on_time: str, overdue: str) -> None:
    for tile, value in (("today", today), ("week", week), ("on-time", on_time), ("overdue", overdue)):
        await expect(page.locator(f"#kpi-{tile} .kpi-value"), f"KPI {tile}").to_have_text(value)


async def chart_data(page: Page, chart: str) -> Any:
    return await page.evaluate(
        "(id) => { const c = echarts.getInstanceByDom(document.getElementById(id)); return c && c.getOption(); }",
        chart,
    )


async def eventually_equal(read: Callable[[], Awaitable[Any]], expected: Any, what: str, timeout: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (found := await read()) != expected:
        if loop.time() > deadline:
            raise AssertionError(f"{what}: {found!r} != {expected!r}")
        await asyncio.sleep(0.2)


def keep(screenshot: Path) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(screenshot, ARTIFACTS / screenshot.name))


async def test_the_dashboard_shows_the_figures_of_a_known_set(stats: Stats, browser: Browser, tmp_path: Path) -> None:
    today = stats.today
    if beijing_now().astimezone(CHINA).date() != today:
        pytest.fail("the Beijing day changed while the test ran: run it again")  # today's figures moved on
    start, monday = today - timedelta(days=29), today - timedelta(days=today.weekday())
    matters = stats.matters

    # The API agrees with the definitions on the known set (so the page, matching the API, shows them too).
    period = summary(matters, start, today)
    api_units = (await stats.get("/v1/stats/units"))["units"]
    assert api_units == units(matters, start, today)
    region_rows = (await stats.get("/v1/stats/summary", group_by="region"))["rows"]
    api_regions = {r["key"]: r["registered"] for r in region_rows if r["key"]}  # "": no location
    assert api_regions == dict(by_city(matters, start, today))
    alerts = await stats.get("/v1/stats/alerts", state="open")
    # Raised as the burst came (its trailing 15 minutes against a baseline of nothing), not when its hour ended.
    assert [(a["region_code"], a["window"]) for a in alerts] == [(BURST_CITY, "PT15M")]
    observed = alerts[0]["observed"]
    assert 5 <= observed < BURST

    w = await open_page(browser, stats.url + "/")
    page = w.page

    # Signing in: asked for the key; a wrong one is refused and asked for again.
    await expect(page.locator("#signin-panel")).to_be_visible()
    await expect(page.locator("#dashboard")).to_be_hidden()
    await page.fill("#signin-key", "not-the-key")
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#signin-error")).to_be_visible()
    await expect(page.locator("#signin-error")).to_have_text(ui("zh-CN", "signin.rejected"))
    await page.fill("#signin-key", OPERATOR_KEY)
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#dashboard")).to_be_visible()
    assert await page.evaluate("() => sessionStorage.getItem('xinfang.stats.operatorKey')") == OPERATOR_KEY

    # In Simplified Chinese, the figures of the set.
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await expect(page.locator("h1")).to_have_text("四川省信访局 · 信访统计")
    await expect(page.locator("#kpi-today h2")).to_have_text("今日登记")
    await kpis(
        page,
        today=str(summary(matters, today, today)["registered"]),
        week=str(summary(matters, monday, today)["registered"]),
        on_time=percent(period["on_time_rate"]),
        overdue=str(period["overdue"]),
    )
    await expect(page.locator("#kpi-on-time .kpi-note")).to_have_text(
        ui("zh-CN", "kpi.onTime.note", concluded=period["concluded"])
    )
    await expect(page.locator("#vendor-note")).to_be_hidden()

    rows = page.locator("#units-table tbody tr")
    await expect(rows).to_have_count(len(api_units))
    for i, u in enumerate(api_units):
        await expect(rows.nth(i).locator("td")).to_have_text(
            [
                str(i + 1),
                name("zh-CN", "unit", u["unit"]),
                str(u["transferred"]),
                percent(u["on_time_rate"]),
                str(u["overdue"]),
                str(u["open"]),
            ]
        )

    cities = sorted(STRINGS["zh-CN"]["city"])
    volumes = {code: api_regions.get(code, 0) for code in cities}

    async def map_values() -> dict[str, int]:
        option = await chart_data(page, "map-chart")
        return {d["code"]: d["value"] for d in option["series"][0]["data"]} if option else {}

    await eventually_equal(map_values, volumes, "the map's volumes")
    assert await page.locator("#map-chart canvas").count() >= 1
    city_rows = page.locator("#city-table tbody tr")
    await expect(city_rows).to_have_count(21)
    await expect(page.locator(f"#city-table tr[data-code='{BURST_CITY}'] td")).to_have_text(
        [
            name("zh-CN", "city", BURST_CITY),
            str(volumes[BURST_CITY]),
            str(by_overdue(matters, start, today, BURST_CITY)),
            percent(city_rate(matters, start, today, BURST_CITY)),
            "1",
        ]
    )
    await page.check("input[name=map-mode][value=surge]")
    await eventually_equal(map_values, {code: int(code == BURST_CITY) for code in cities}, "the map's surges")
    await page.check("input[name=map-mode][value=volume]")

    alert_rows = page.locator("#alerts-table tbody tr")
    await expect(alert_rows).to_have_count(1)
    await expect(alert_rows.first.locator("td").nth(0)).to_have_text(name("zh-CN", "city", BURST_CITY))
    window = STRINGS["zh-CN"]["ui"].get("window.PT15M", "PT15M")  # an untranslated window is shown as it is
    await expect(alert_rows.first.locator("td").nth(1)).to_have_text(window)
    await expect(alert_rows.first.locator("td").nth(2)).to_have_text(str(observed))

    # Volume over time: one stacked series per channel, 30 days, adding up to the period's matters per channel.
    option = await chart_data(page, "volume-chart")
    assert len(option["xAxis"][0]["data"]) == 30
    per_channel = Counter(m.channel.value for m in matters if start <= m.day <= today)
    assert {s["code"]: sum(s["data"]) for s in option["series"]} == dict(per_channel)
    assert {s["name"] for s in option["series"]} == {name("zh-CN", "channel", c) for c in per_channel}

    await page.check("input[name=volume-by][value=office]")

    async def volume_by_office() -> dict[str | None, int]:
        option = await chart_data(page, "volume-chart")
        return {s["code"]: sum(s["data"]) for s in option["series"]}

    per_office = Counter(m.office.value if m.office else None for m in matters if start <= m.day <= today)
    await eventually_equal(volume_by_office, dict(per_office), "the volume by office")
    await page.check("input[name=volume-by][value=channel]")

    # Hot terms per category, as the API has them.
    labor = (await stats.get("/v1/stats/hot-terms", window="P7D", category="labor", top=6))["terms"]
    assert "农民工工资" in [t["term"] for t in labor]
    await expect(page.locator("#terms [data-category=labor] .term")).to_have_text([t["term"] for t in labor])

    screenshot = tmp_path / "dashboard-zh-CN.png"
    await page.screenshot(path=screenshot, full_page=True)
    keep(screenshot)

    # Filters: a longer period, then one category, then one city, each without a reload.
    await page.evaluate("() => { window.notReloaded = true; }")
    longer = today - timedelta(days=59)
    await page.fill("#filter-from", longer.isoformat())
    wider = summary(matters, longer, today)
    assert wider != period
    await kpis(
        page,
        today=str(summary(matters, today, today)["registered"]),
        week=str(summary(matters, monday, today)["registered"]),
        on_time=percent(wider["on_time_rate"]),
        overdue=str(wider["overdue"]),
    )
    await expect(page.locator("#units-table tbody tr")).to_have_count(len(units(matters, longer, today)))
    assert f"from={longer.isoformat()}" in page.url

    labor_matters = [m for m in matters if m.category == Category.LABOR]
    await page.select_option("#filter-category", "labor")
    await kpis(
        page,
        today=str(summary(labor_matters, today, today)["registered"]),
        week=str(summary(labor_matters, monday, today)["registered"]),
        on_time=percent(summary(labor_matters, longer, today)["on_time_rate"]),
        overdue=str(summary(labor_matters, longer, today)["overdue"]),
    )
    await expect(page.locator("#terms [data-category]")).to_have_count(1)
    await expect(page.locator("#units-scope")).to_be_visible()
    await page.select_option("#filter-category", "")
    liangshan = [m for m in matters if m.city == BURST_CITY]
    await page.select_option("#filter-city", BURST_CITY)
    await kpis(
        page,
        today=str(summary(liangshan, today, today)["registered"]),
        week=str(summary(liangshan, monday, today)["registered"]),
        on_time=percent(summary(liangshan, longer, today)["on_time_rate"]),
        overdue=str(summary(liangshan, longer, today)["overdue"]),
    )
    await expect(page.locator(f"#city-table tr.selected[data-code='{BURST_CITY}']")).to_have_count(1)
    await page.select_option("#filter-city", "")
    await page.fill("#filter-from", today.isoformat())  # one day: by the hour

    async def hourly() -> tuple[int, dict[str, int]]:
        option = await chart_data(page, "volume-chart")
        return len(option["xAxis"][0]["data"]), {s["code"]: sum(s["data"]) for s in option["series"]}

    today_by_channel = Counter(m.channel.value for m in matters if m.day == today)
    await eventually_equal(hourly, (24, dict(today_by_channel)), "today's volume by the hour")
    await page.click("#filter-reset")
    await kpis(
        page,
        today=str(summary(matters, today, today)["registered"]),
        week=str(summary(matters, monday, today)["registered"]),
        on_time=percent(period["on_time_rate"]),
        overdue=str(period["overdue"]),
    )
    assert await page.evaluate("() => window.notReloaded === true"), "the page was reloaded"

    # English, from the switch and from ?lang=en; and back.
    await page.click("#lang-switch")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("#kpi-today h2")).to_have_text("Registered today")
    await expect(page.locator("h1")).to_have_text(ui("en", "title"))
    await expect(rows.first.locator("td").nth(1)).to_have_text(name("en", "unit", api_units[0]["unit"]))
    await expect(alert_rows.first.locator("td").nth(0)).to_have_text("Liangshan")
    assert "lang=en" in page.url
    assert await page.evaluate("() => window.notReloaded === true"), "the page was reloaded"
    await page.locator("#city-table").scroll_into_view_if_needed()
    screenshot = tmp_path / "dashboard-en.png"
    await page.screenshot(path=screenshot, full_page=True)
    keep(screenshot)
    await page.goto(stats.url + "/?lang=en")  # the key stays in this tab's sessionStorage
    await expect(page.locator("#kpi-week h2")).to_have_text("Registered this week")
    await kpis(
        page,
        today=str(summary(matters, today, today)["registered"]),
        week=str(summary(matters, monday, today)["registered"]),
        on_time=percent(period["on_time_rate"]),
        overdue=str(period["overdue"]),
    )
    await page.click("#lang-switch")
    await expect(page.locator("#kpi-today h2")).to_have_text("今日登记")

    # Signing out forgets the key.
    await page.click("#signout")
    await expect(page.locator("#signin-panel")).to_be_visible()
    assert await page.evaluate("() => sessionStorage.getItem('xinfang.stats.operatorKey')") is None

    refused = "Failed to load resource: the server responded with a status of 401"  # the wrong key's, by Chromium
    assert not [p for p in w.problems if refused not in p], w.problems
    foreign = [u for u in w.requests if not u.startswith(stats.url + "/") and not u.startswith("data:")]
    assert not foreign, f"requests to anywhere but the service: {foreign}"
    assert not [u for u in w.requests if OPERATOR_KEY in u], "the key in a URL"
    assert w.api and not [a["url"] for a in w.api if PETITIONER in a["body"]], "personal data from the API"
    assert PETITIONER not in await page.content()
    await page.context.close()


def by_overdue(matters: list[Matter], start: date, end: date, city: str) -> int:
    return sum(m.overdue for m in matters if m.city == city and start <= m.day <= end)


def city_rate(matters: list[Matter], start: date, end: date, city: str) -> float | None:
    return summary([m for m in matters if m.city == city], start, end)["on_time_rate"]


async def test_without_the_vendor_files_the_page_says_so_and_shows_the_figures(
    stats: Stats, browser: Browser, tmp_path: Path
) -> None:
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" and "404" not in m.text else None,
    )
    await page.route("**/static/vendor/**", lambda route: route.fulfill(status=404, body="not installed"))
    await page.goto(stats.url + "/")
    await page.fill("#signin-key", OPERATOR_KEY)
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#vendor-note")).to_be_visible()
    await expect(page.locator("#vendor-note")).to_have_text(ui("zh-CN", "note.vendor"))
    await expect(page.locator("#volume-chart")).to_be_hidden()
    today = stats.today
    await expect(page.locator("#kpi-today .kpi-value")).to_have_text(
        str(summary(stats.matters, today, today)["registered"])
    )
    await expect(page.locator("#units-table tbody tr")).to_have_count(
        len(units(stats.matters, today - timedelta(days=29), today))
    )
    await expect(page.locator("#city-table tbody tr")).to_have_count(21)
    screenshot = tmp_path / "dashboard-no-vendor.png"
    await page.screenshot(path=screenshot, full_page=True)
    keep(screenshot)
    assert not problems, problems
    await context.close()


async def test_a_filter_change_cut_short_by_another_refresh_still_shows_the_filtered_terms(
    stats: Stats, browser: Browser
) -> None:
    w = await open_page(browser, stats.url + "/")
    page = w.page
    await page.fill("#signin-key", OPERATOR_KEY)
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#terms [data-category=labor]")).to_be_visible()
    assert await page.locator("#terms [data-category]").count() > 1

    async def slowly(route: Route) -> None:  # the filter's refresh is still under way when the next one starts
        await asyncio.sleep(1.5)
        with contextlib.suppress(PlaywrightError):  # aborted meanwhile
            await route.continue_()

    await page.route(re.compile(r"/v1/stats/hot-terms"), slowly)
    await page.select_option("#filter-category", "labor")
    await page.check("input[name=volume-by][value=office]")  # a refresh without terms, which aborts the first
    labor = (await stats.get("/v1/stats/hot-terms", window="P7D", category="labor", top=15))["terms"]
    await expect(page.locator("#terms [data-category]")).to_have_count(1)
    await expect(page.locator("#terms [data-category=labor] .term")).to_have_text([t["term"] for t in labor])
    assert not [p for p in w.problems if p.startswith("page error")], w.problems
    await page.context.close()


async def test_a_new_matter_shows_at_the_next_poll_without_a_reload(
    stats: Stats, browser: Browser, bootstrap: str
) -> None:
    w = await open_page(browser, stats.url + "/")
    page = w.page
    await page.fill("#signin-key", OPERATOR_KEY)
    await page.click("#signin button[type=submit]")
    today = stats.today
    before = summary(stats.matters, today, today)["registered"]
    await expect(page.locator("#kpi-today .kpi-value")).to_have_text(str(before))
    await page.evaluate("() => { window.notReloaded = true; }")

    now = beijing_now()
    new = Matter(now, Channel.LETTER, "510104", Category.HEALTH, Office.LETTERS_2, "dept-health")
    await publish(bootstrap, [new], now)
    stats.matters.append(new)

    async def in_the_api() -> bool:
        rows = await stats.get("/v1/stats/summary", group_by="channel", **{"from": str(today), "to": str(today)})
        return sum(r["registered"] for r in rows["rows"]) == before + 1

    await until(in_the_api, "the new matter in the API", timeout=30)
    # The page polls every 30 s: no reload, no filter touched.
    await expect(page.locator("#kpi-today .kpi-value")).to_have_text(str(before + 1), timeout=40_000)
    assert await page.evaluate("() => window.notReloaded === true"), "the page was reloaded"
    assert not w.problems, w.problems
    await page.context.close()

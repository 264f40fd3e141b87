"""The console in a real browser: Debian's Chromium driven by Playwright, against the running stack. Intake,
routing, supervision, notify, stats and the console are the real `xinfang-<service> serve` processes on free
ports (the console's backends pointing at them), on the real Kafka broker and a private PostgreSQL database.

People do their jobs through the pages, and the services, not the pages, decide what each may do: a clerk clears
a matter routing could not place from the queue (`matters.routed.v1` carries the unit, history names the clerk);
a clerk of another office neither sees nor opens nor changes it (nor straight against routing's API); reception
registers a group visit whose code works on /track, where the petitioner rates the opinion once; a leader reads
and cannot change (a forged post with the leader's own CSRF token is refused by routing); a person's headers from
any caller but the console are refused; sign-in is limited and served again, CSRF is refused, and an idle
session ends (a second console on a database of its own, idle limit 60 s, its session opened as the module
starts and checked as it ends).

Every page visited is checked the same way (`look`): the expected status and the console's CSP header; no
console error, page error or CSP violation; axe-core (tests/browser, installed by deploy/local/install.sh)
finds no serious or critical violation; a full-page screenshot is kept in .local/artifacts/console-<name>.png.
The CSP stays enforced throughout (no context has bypass_csp): axe-core is evaluated through the DevTools
protocol, which the page's CSP does not govern, so no script is added to the document and a page that breaks
its own CSP still shows up as a console error. Staff work on a laptop, reception on a tablet, petitioners on a
phone (the viewports). Elements are found by role and label, in the words of xinfang_console.i18n, so the
templates may change around them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Response, async_playwright, expect
from xinfang_console import accounts
from xinfang_console.app import MIGRATIONS as CONSOLE_MIGRATIONS
from xinfang_console.i18n import WORDS

from tests import factories
from tests.integration.conftest import ROOT, eventually
from tests.integration.kafka_tools import Tail, consumed_by, start_group_at_end
from tests.integration.pipeline import MIGRATIONS
from tests.integration.processes import (
    ServiceProcess,
    free_port,
    group_settled,
    log_errors,
    private_database,
    start_standin,
    terminate,
)
from xinfang_intake.channel_keys import add_key
from xinfang_shared.contracts.reference import UNITS, Channel, Office
from xinfang_shared.contracts.topics import MATTERS_REGISTERED_V2, MATTERS_ROUTED, MATTERS_STATUS
from xinfang_shared.db import migrate_dsn
from xinfang_shared.staff import Role

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / ".local" / "artifacts"
RUN = uuid.uuid4().hex[:8]
CHANNEL_KEY, OPERATOR_KEY, CONSOLE_KEY = f"cb-channel-{RUN}", f"cb-operator-{RUN}", f"cb-console-{RUN}"
RECEPTION_KEY = f"cb-reception-{RUN}"  # the console's channel key: system console, the visit channel
UNIT_KEYS = {unit: f"cb-{unit}-{RUN}" for unit in UNITS}
PASSWORD = "correct horse battery staple"
CLERK, OTHER, LEADER, RECEPTION = "li.clerk", "wang.other", "zhao.leader", "sun.reception"
LOCKED, IDLE = "qian.locked", "zhou.idle"  # whose sign-in is limited; whose session ends on the idle console
STAFF = [
    (CLERK, Role.CLERK, Office.LETTERS_2),
    (OTHER, Role.CLERK, Office.ONLINE),
    (LEADER, Role.LEADER, None),
    (RECEPTION, Role.CLERK, Office.RECEPTION),
    (LOCKED, Role.CLERK, Office.LETTERS_1),
]
WINDOW_S, MAX_FAILED = 8, 3  # sign-in failures of one account counted in WINDOW_S; MAX_FAILED of them limit it
IDLE_S = 60  # the idle console's session_idle_s (the least the settings allow)
LAPTOP, TABLET, PHONE = {"width": 1366, "height": 900}, {"width": 820, "height": 1180}, {"width": 390, "height": 844}
STAFF_SERVICES = ("routing", "supervision")


# --- the stack ----------------------------------------------------------------------------------------------


@dataclass
class Stack:
    console: str  # the console's URL
    idle_console: str  # the second console (idle limit IDLE_S), on a database of its own
    intake: httpx.AsyncClient
    routing: httpx.AsyncClient
    supervision: httpx.AsyncClient
    tail: Tail  # matters.routed.v1, matters.status.v1 and matters.registered.v2, from before anything was sent
    browser: Browser
    idle_session: dict[str, Any]  # the idle console's signed-in browser state
    idle_since: float  # monotonic time that session was last used
    logs: dict[str, Path]
    personal: list[str] = field(default_factory=list)  # personal data the tests sent: never in a log


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


OPERATOR = _bearer(OPERATOR_KEY) | {"X-Operator": "test-console-browser"}


def _as_staff(user: str, role: Role, office: Office | None) -> dict[str, str]:
    headers = {"X-Staff-User": user, "X-Staff-Role": role.value}
    return headers | ({"X-Staff-Office": office.value} if office else {})


async def _add_accounts(database: str, staff: list[tuple[str, Role, Office | None]]) -> None:
    conn = await asyncpg.connect(database, server_settings={"search_path": "console"})
    try:
        for user, role, office in staff:
            await accounts.add(conn, user, role, office, PASSWORD)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def running(
    stack: dict[str, str], bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium not found at {CHROMIUM}: deploy/local/install.sh installs Debian's chromium")
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: deploy/local/install.sh installs it (npm ci in tests/browser)")
    logs_dir = tmp_path_factory.mktemp("console-browser")
    services = ("intake", "routing", "supervision", "notify", "stats")
    ports = {name: free_port() for name in (*services, "console", "idle", "mail", "sms")}
    logs = {name: logs_dir / f"{name}.log" for name in ports}
    async with private_database(stack["DATABASE_URL"]) as database, private_database(stack["DATABASE_URL"]) as idle_db:
        groups = {name: f"test-console-browser-{name}-{RUN}" for name in services}
        for name in services:
            await migrate_dsn(database, name, MIGRATIONS[name])
            await start_group_at_end(bootstrap, groups[name], consumed_by(name))
        await migrate_dsn(database, "console", CONSOLE_MIGRATIONS)
        await migrate_dsn(idle_db, "console", CONSOLE_MIGRATIONS)
        conn = await asyncpg.connect(database, server_settings={"search_path": "intake"})
        try:
            await add_key(conn, system="console", channels=[Channel.VISIT], key=RECEPTION_KEY)
        finally:
            await conn.close()
        await _add_accounts(database, STAFF)
        await _add_accounts(idle_db, [(IDLE, Role.CLERK, Office.LETTERS_1)])

        sms_key, sms_token = f"sms-{RUN}", f"receipt-{RUN}"
        standins = [
            await start_standin("mail_sink.py", ports["mail"], logs_dir / "mail", logs["mail"]),
            await start_standin(
                "sms_gateway.py",
                ports["sms"],
                logs_dir / "sms",
                logs["sms"],
                "--receipts-url",
                f"http://127.0.0.1:{ports['notify']}/v1/sms/receipts",
                env={"SMS_ACCESS_KEY": sms_key, "SMS_RECEIPT_TOKEN": sms_token},
            ),
        ]
        common = os.environ | {
            "ENVIRONMENT": "test",
            "DATABASE_URL": database,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "OPERATOR_API_KEY": OPERATOR_KEY,
            "CONSOLE_API_KEY": CONSOLE_KEY,
            "OUTBOX_POLL_INTERVAL_S": "0.2",
            "LOG_LEVEL": "WARNING",
        }
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        extra: dict[str, dict[str, str]] = {
            "intake": {
                "CHANNEL_API_KEY": CHANNEL_KEY,
                "PUBLIC_RATE_LIMIT_PER_MINUTE": "1000000",
                "PUBLIC_RATE_LIMIT_BURST": "1000000",
            },
            "routing": {f"UNIT_API_KEY_{unit.replace('-', '_')}": key for unit, key in UNIT_KEYS.items()},
            "supervision": {},
            "notify": {
                "SMTP_URL": f"smtp://127.0.0.1:{ports['mail']}",
                "SMS_GATEWAY_URL": url["sms"],
                "SMS_ACCESS_KEY": sms_key,
                "SMS_RECEIPT_TOKEN": sms_token,
                "QUIET_HOURS_START": "00:00",
                "QUIET_HOURS_END": "00:00",
                "SEND_POLL_S": "0.2",
            },
            "stats": {},
        }
        consoles = {
            "ROUTING_URL": url["routing"],
            "SUPERVISION_URL": url["supervision"],
            "INTAKE_URL": url["intake"],
            "NOTIFY_URL": url["notify"],
            "STATS_URL": url["stats"],
            "INTAKE_CHANNEL_KEY": RECEPTION_KEY,
            "LOG_LEVEL": "INFO",  # what it logs at INFO is checked for personal data too
        }
        processes = {
            name: ServiceProcess(
                common | {"KAFKA_GROUP_ID": groups[name], "HTTP_PORT": str(ports[name])} | extra[name],
                logs[name],
                service=name,
            )
            for name in services
        }
        processes["console"] = ServiceProcess(
            common
            | consoles
            | {
                "HTTP_PORT": str(ports["console"]),
                "SESSION_SECRET": f"sessions-{RUN}",
                "SIGNIN_WINDOW_S": str(WINDOW_S),
                "SIGNIN_MAX_PER_ACCOUNT": str(MAX_FAILED),
            },
            logs["console"],
            service="console",
        )
        processes["idle"] = ServiceProcess(
            common
            | consoles
            | {
                "DATABASE_URL": idle_db,
                "HTTP_PORT": str(ports["idle"]),
                "SESSION_SECRET": f"idle-sessions-{RUN}",
                "SESSION_IDLE_S": str(IDLE_S),
            },
            logs["idle"],
            service="console",
        )
        tail = Tail(bootstrap, [MATTERS_ROUTED.name, MATTERS_STATUS.name, MATTERS_REGISTERED_V2.name])
        await tail.start()
        clients = {name: httpx.AsyncClient(base_url=url[name], timeout=30) for name in ("intake", *STAFF_SERVICES)}
        expect.set_options(timeout=15_000)  # a loaded 2-core machine
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
                try:

                    async def idle_session() -> tuple[dict[str, Any], float]:
                        """The idle console's session, opened first (the others start meanwhile) and left alone
                        until the last test looks at it."""
                        await processes["idle"].start()
                        idle = await Person.open(browser, url["idle"])
                        try:
                            await idle.sign_in(IDLE)
                            await expect(idle.page.get_by_role("button", name=idle.t["sign_out"])).to_be_visible()
                            return dict(await idle.context.storage_state()), time.monotonic()
                        finally:
                            await idle.close()

                    others = (p.start() for name, p in processes.items() if name != "idle")
                    (idle_state, idle_since), *_ = await asyncio.gather(idle_session(), *others)
                    await asyncio.gather(*(group_settled(bootstrap, groups[name]) for name in services))
                    yield Stack(
                        url["console"],
                        url["idle"],
                        clients["intake"],
                        clients["routing"],
                        clients["supervision"],
                        tail,
                        browser,
                        idle_state,
                        idle_since,
                        logs,
                    )
                finally:
                    await browser.close()
        finally:
            for client in clients.values():
                await client.aclose()
            await tail.stop()
            for process in processes.values():
                process.stop()
            for proc in standins:
                terminate(proc)
    for name in processes:
        errors = log_errors(logs[name])
        assert not errors, f"{name}: {errors[:3]}"


async def _waiting_matter(stack: Stack) -> dict[str, Any]:
    """A matter routing cannot place (no location): it waits in letters-2's queue. Answers intake's answer."""
    body = factories.submission(location=None, title=f"无地址的来信 {uuid.uuid4().hex[:6]}")
    stack.personal += [body["petitioner"]["id_number"], body["petitioner"]["phone"]]
    answer = await stack.intake.post("/v1/submissions", json=body, headers=_bearer(CHANNEL_KEY))
    assert answer.status_code in (201, 202), answer.text
    matter: dict[str, Any] = answer.json() | {"petitioner": body["petitioner"]}

    async def waiting() -> bool:
        seen = await stack.routing.get(f"/v1/matters/{matter['matter_id']}", headers=OPERATOR)
        return seen.status_code == 200 and seen.json()["status"] == "awaiting-assignment"

    await eventually(waiting, timeout=60)
    seen = (await stack.routing.get(f"/v1/matters/{matter['matter_id']}", headers=OPERATOR)).json()
    assert seen["office"] == Office.LETTERS_2 and seen["unit"] is None
    return matter


async def _routing_view(stack: Stack, matter_id: str) -> dict[str, Any]:
    seen = await stack.routing.get(f"/v1/matters/{matter_id}", headers=OPERATOR)
    assert seen.status_code == 200, seen.text
    return dict(seen.json())


# --- the browser --------------------------------------------------------------------------------------------


@dataclass
class Person:
    """One person's browser (a context of its own: its own cookies), and what went wrong in it."""

    context: BrowserContext
    page: Page
    base: str
    lang: str
    problems: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, browser: Browser, base: str, lang: str = "zh-CN", viewport: Any = LAPTOP) -> Person:
        context = await browser.new_context(locale=lang, viewport=viewport, timezone_id="Asia/Shanghai")
        page = await context.new_page()
        person = cls(context, page, base, lang)

        def console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                person.problems.append(f"console {message.type}: {message.text} ({message.location.get('url')})")

        page.on("console", console)
        page.on("pageerror", lambda error: person.problems.append(f"page error: {error}"))
        await page.add_init_script(
            "document.addEventListener('securitypolicyviolation', (e) => console.error("
            "'CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
        )
        return person

    @property
    def t(self) -> dict[str, str]:
        return WORDS[self.lang]

    async def close(self) -> None:
        """Closes the browser; nothing may have gone wrong since the last page looked at."""
        await self.context.close()
        assert not self.problems, self.problems

    async def goto(self, path: str) -> Response:
        response = await self.page.goto(self.base + path)
        assert response is not None
        return response

    async def click(self, target: Any) -> Response:
        """Clicks what sends a form or follows a link; answers the document it leads to."""
        async with self.page.expect_navigation() as navigation:
            await target.click()
        return await navigation.value

    async def sign_in(self, user: str, password: str = PASSWORD) -> Response:
        if not await self.page.get_by_label(self.t["password"], exact=True).is_visible():
            await self.goto("/")
        await self.page.get_by_label(self.t["username"], exact=True).fill(user)
        await self.page.get_by_label(self.t["password"], exact=True).fill(password)
        return await self.click(self.page.get_by_role("button", name=self.t["sign_in"], exact=True))

    async def csrf(self) -> str:
        """The session's CSRF token, as every page with the sign-out form carries it."""
        token = await self.page.locator("input[name=csrf]").first.get_attribute("value")
        assert token
        return token

    async def forge(self, action: str, fields: dict[str, str]) -> Response:
        """A form the page does not offer, made in the page and posted by the browser (its cookies go with it)."""
        async with self.page.expect_navigation() as navigation:
            await self.page.evaluate(
                """([action, fields]) => {
                    const form = document.createElement('form');
                    form.method = 'post';
                    form.action = action;
                    for (const [name, value] of Object.entries(fields)) {
                        const input = document.createElement('input');
                        input.type = 'hidden';
                        input.name = name;
                        input.value = value;
                        form.appendChild(input);
                    }
                    document.body.appendChild(form);
                    form.submit();
                }""",
                [action, fields],
            )
        return await navigation.value

    async def switch_language(self) -> None:
        other = "en" if self.lang == "zh-CN" else "zh-CN"
        response = await self.click(self.page.get_by_role("link", name=self.t["language"], exact=True))
        assert response.ok
        self.lang = other
        await expect(self.page.locator("html")).to_have_attribute("lang", other)

    async def look(self, name: str, response: Response, status: int = 200) -> None:
        """The checks every page visited gets (see the module); `status`: the document's expected status."""
        assert response.status == status, f"{name}: {response.status} ({response.url})"
        # The console's own policy, or the relayed stats dashboard's: either way nothing from another origin.
        csp = response.headers.get("content-security-policy", "")
        assert re.search(r"default-src '(none|self)'", csp) and not re.search(r"https?:|\*|'unsafe-", csp), csp
        await self.page.wait_for_load_state("load")
        if "script-src 'self'" in csp:
            await self.page.wait_for_load_state("networkidle")  # a page with a script: once it has drawn
        # Chromium reports a document answered 4xx as a console error: expected on a refusal page, and only then.
        refused = f"Failed to load resource: the server responded with a status of {status} "
        problems = [p for p in self.problems if not (status >= 400 and refused in p and response.url in p)]
        self.problems.clear()
        assert not problems, f"{name}: {problems}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=ARTIFACTS / f"console-{name}.png", full_page=True)
        violations = await axe(self.page)
        serious = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not serious, f"{name}: axe-core finds {json.dumps(serious, ensure_ascii=False, indent=1)[:4000]}"
        for v in violations:  # the rest, for whoever reads the log
            print(f"axe {name}: {v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])})")
        assert not self.problems, f"{name}: {self.problems}"


_AXE_SOURCE: list[str] = []


async def axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is. Evaluated through the DevTools protocol: the page's CSP
    (script-src 'none') stays enforced, and no script is added to the document."""
    if not _AXE_SOURCE:
        _AXE_SOURCE.append(AXE.read_text(encoding="utf-8"))
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(_AXE_SOURCE[0])
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ['violations']});
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => ({target: n.target, summary: n.failureSummary, html: n.html.slice(0, 300)})),
            }));
        }"""
    )
    return found


def _status_to(stack: Stack, matter_id: str, unit: str) -> bool:
    """Whether matters.status.v1 said the matter was transferred to `unit`."""
    key = matter_id.encode()
    changes = [orjson.loads(r.value) for r in stack.tail.on(MATTERS_STATUS.name) if r.key == key]
    return any(c["status"] == "transferred" and c["unit"] == unit for c in changes)


def _routed_to(stack: Stack, matter_id: str, unit: str | None) -> bool:
    """Whether matters.routed.v1 carried the matter to `unit` (None: to any unit)."""
    key = matter_id.encode()
    units = [orjson.loads(r.value).get("unit") for r in stack.tail.on(MATTERS_ROUTED.name) if r.key == key]
    return unit in units if unit else any(units)


# --- the flows ----------------------------------------------------------------------------------------------


async def test_a_clerk_assigns_a_matter_routing_could_not_place_as_themselves(running: Stack) -> None:
    stack = running
    matter = await _waiting_matter(stack)
    matter_id, unit = matter["matter_id"], "city-5103"
    clerk = await Person.open(stack.browser, stack.console)
    try:
        await clerk.look("signin", await clerk.goto("/"))
        t = clerk.t
        # By keyboard alone: tabbed to the user name, on to the password, sent with Enter.
        username = clerk.page.get_by_label(t["username"], exact=True)
        for _ in range(10):
            await clerk.page.keyboard.press("Tab")
            if await username.evaluate("(e) => e === document.activeElement"):
                break
        await expect(username).to_be_focused()
        await clerk.page.keyboard.type(CLERK)
        await clerk.page.keyboard.press("Tab")
        await expect(clerk.page.get_by_label(t["password"], exact=True)).to_be_focused()
        await clerk.page.keyboard.type(PASSWORD)
        async with clerk.page.expect_navigation() as signed_in:
            await clerk.page.keyboard.press("Enter")
        await clerk.look("queue-clerk", await signed_in.value)
        await expect(clerk.page.get_by_role("button", name=t["sign_out"])).to_be_visible()
        row = clerk.page.get_by_role("row").filter(has=clerk.page.locator(f"a[href='/matters/{matter_id}']"))
        await expect(row).to_have_count(1)

        # Assigned from the queue's row, or from the matter's page where the queue offers no form.
        where: Any = row
        if not await row.get_by_role("button", name=t["assign"], exact=True).count():
            await clerk.look("matter-clerk-waiting", await clerk.click(row.locator(f"a[href='/matters/{matter_id}']")))
            where = clerk.page
        await where.get_by_label(t["unit"], exact=True).select_option(unit)
        await where.get_by_label(t["reason"], exact=True).fill("来信内容反映的是自贡市的问题")
        done = await clerk.click(where.get_by_role("button", name=t["assign"], exact=True))
        await clerk.look("queue-clerk-assigned", done)
        await expect(clerk.page.get_by_role("status")).to_contain_text(t["done"])
        await expect(clerk.page.locator(f"a[href='/matters/{matter_id}']")).to_have_count(0)

        # Routing's view, and its history on the matter's page, name the clerk.
        view = await _routing_view(stack, matter_id)
        assert (view["unit"], view["status"]) == (unit, "transferred")
        assert [h["actor"] for h in view["history"] if h["action"] == "reassigned"] == [f"staff:{CLERK}"]
        await clerk.look("matter-clerk", await clerk.goto(f"/matters/{matter_id}"))
        # Its office's clerk sees the petitioner in clear (the leader, below, masked).
        await expect(clerk.page.get_by_text(matter["petitioner"]["id_number"])).not_to_have_count(0)
        await expect(clerk.page.get_by_role("row").filter(has_text=f"staff:{CLERK}")).not_to_have_count(0)
    finally:
        await clerk.close()
    # The services hear of it (matters.status.v1: transferred to the unit), and so do the systems written against
    # matters.routed.v1 (the issue: the routed event carries the chosen unit).
    await eventually(lambda: _status_to(stack, matter_id, unit), timeout=30)
    try:
        await eventually(lambda: _routed_to(stack, matter_id, unit), timeout=10)
    except AssertionError:
        raise AssertionError(
            f"matters.routed.v1 never carried {unit} for the assigned matter: routing publishes it on the first"
            " routing only (unit null for a matter it could not place), not on a person's assignment"
        ) from None


async def test_a_clerk_of_another_office_neither_sees_nor_opens_nor_changes_it(running: Stack) -> None:
    stack = running
    matter = await _waiting_matter(stack)
    matter_id = matter["matter_id"]
    other = await Person.open(stack.browser, stack.console)
    try:
        await other.sign_in(OTHER)
        await other.switch_language()  # this person works in English
        await other.look("queue-other-office-en", await other.goto("/"))
        await expect(other.page.get_by_role("button", name="Sign out")).to_be_visible()
        await expect(other.page.locator(f"a[href='/matters/{matter_id}']")).to_have_count(0)

        opened = await other.goto(f"/matters/{matter_id}")
        await other.look("matter-refused-en", opened, 403)
        await expect(other.page.get_by_role("status")).to_contain_text(WORDS["en"]["refused"])
        await expect(other.page.get_by_text(matter["tracking_code"])).to_have_count(0)

        fields = {"unit": "city-5103", "reason": "不是本处室的事项", "csrf": await other.csrf()}
        acted = await other.forge(f"/matters/{matter_id}/assign", fields)
        await other.look("assign-refused-en", acted, 403)
        await expect(other.page.get_by_role("status")).to_contain_text(WORDS["en"]["refused"])
    finally:
        await other.close()

    # Straight against routing, as the console would call for them: refused there, not only in the pages.
    theirs = _bearer(CONSOLE_KEY) | _as_staff(OTHER, Role.CLERK, Office.ONLINE)
    path = f"/v1/matters/{matter_id}"
    assert (await stack.routing.get(path, headers=theirs)).status_code == 403
    assert (await stack.routing.get("/v1/queues/letters-2", headers=theirs)).status_code == 403
    own = await stack.routing.get("/v1/queues/online", headers=theirs)
    assert own.status_code == 200 and matter_id not in own.text
    sent = await stack.routing.post(f"{path}/reassign", json={"unit": "city-5103", "reason": "越权"}, headers=theirs)
    assert sent.status_code == 403, sent.text
    # The same call as the office's own clerk is answered: the refusals are the office's, not the call's.
    mine = _bearer(CONSOLE_KEY) | _as_staff(CLERK, Role.CLERK, Office.LETTERS_2)
    assert (await stack.routing.get(path, headers=mine)).status_code == 200
    view = await _routing_view(stack, matter_id)
    assert (view["status"], view["unit"]) == ("awaiting-assignment", None)
    assert not any(h["actor"] == f"staff:{OTHER}" for h in view["history"])


async def test_reception_registers_a_group_visit_and_the_petitioner_tracks_and_rates_it_once(running: Stack) -> None:
    stack = running
    visitor, one, two = (factories.submission()["petitioner"] for _ in range(3))
    stack.personal += [p[k] for p in (visitor, one, two) for k in ("name", "id_number", "phone")]
    title = f"集体反映拖欠工资 {RUN}"
    clerk = await Person.open(stack.browser, stack.console, viewport=TABLET)
    try:
        await clerk.sign_in(RECEPTION)
        await clerk.look("queue-reception", await clerk.goto("/"))
        t = clerk.t
        await clerk.look("reception", await clerk.click(clerk.page.get_by_role("link", name=t["reception"])))
        form = clerk.page
        for label, value in (
            (t["name"], visitor["name"]),
            (t["id_number"], visitor["id_number"]),
            (t["phone"], visitor["phone"]),
            (t["headcount"], "30"),
            (f"{t['name']} 1", one["name"]),
            (f"{t['id_number']} 1", one["id_number"]),
            (f"{t['phone']} 1", one["phone"]),
            (f"{t['name']} 2", two["name"]),
            (f"{t['id_number']} 2", two["id_number"]),
            (f"{t['phone']} 2", two["phone"]),
            (t["region"], "510104"),
            (t["subject"], title),
            (t["content"], "某建筑公司拖欠三十名农民工工资半年，多次讨要无果。"),
        ):
            await form.get_by_label(label, exact=True).fill(value)
        await form.get_by_label(t["kind"], exact=True).select_option("complaint")
        await form.get_by_label(t["place"], exact=True).select_option("chengdu")
        registered = await clerk.click(form.get_by_role("button", name=t["register"], exact=True))
        await clerk.look("registered", registered)
        code = (await form.get_by_label(t["code"], exact=True).inner_text()).strip()
        assert code, "the page shows the tracking code"
    finally:
        await clerk.close()

    # Registered once, as a group of 30 with its two representatives, on the visit channel.
    def the_visit() -> list[Any]:
        found = [orjson.loads(r.value) for r in stack.tail.on(MATTERS_REGISTERED_V2.name)]
        return [m for m in found if m["title"] == title]

    await eventually(lambda: bool(the_visit()), timeout=30)
    event = the_visit()[0]
    assert (event["channel"], event["headcount"], event["representative_count"]) == ("visit", 30, 2)
    matter_id = event["matter_id"]

    # The visitor looks the code up (on a phone), before any opinion: the status, nothing to rate.
    petitioner = await Person.open(stack.browser, stack.console, viewport=PHONE)
    second_tab = await Person.open(stack.browser, stack.console, viewport=PHONE)
    try:
        t = petitioner.t
        await petitioner.look("track", await petitioner.goto("/track"))
        await petitioner.page.get_by_label(t["code"], exact=True).fill(code)
        looked = await petitioner.click(petitioner.page.get_by_role("button", name=t["look_up"]))
        await petitioner.look("track-found", looked)
        await expect(petitioner.page.get_by_role("button", name=t["rate"])).to_have_count(0)
        for private in (visitor["name"], visitor["phone"], one["name"]):
            await expect(petitioner.page.get_by_text(private)).to_have_count(0)

        # The unit routing sent it to accepts and concludes it with an opinion, over routing's unit API.
        await eventually(lambda: _routed_to(stack, matter_id, None), timeout=30)
        unit = (await _routing_view(stack, matter_id))["unit"]
        opinion = f"已督促该公司补发全部工资 {RUN}"
        for action, extra in (("accepted", {}), ("concluded", {"opinion": {"result": "support", "text": opinion}})):
            body = {
                "matter_id": matter_id,
                "unit": unit,
                "action": action,
                "at": datetime.now(UTC).isoformat(),
                **extra,
            }
            sent = await stack.routing.post(f"/v1/units/{unit}/feedback", json=body, headers=_bearer(UNIT_KEYS[unit]))
            assert sent.status_code == 202, sent.text

        async def opinion_known() -> bool:
            return bool((await stack.intake.get(f"/v1/matters/{code}")).json().get("opinion"))

        await eventually(opinion_known, timeout=60)
        await second_tab.goto(f"/track?code={code}")  # the same code open on another device
        found = await petitioner.goto(f"/track?code={code}")
        await petitioner.look("track-opinion", found)
        await expect(petitioner.page.get_by_text(opinion)).to_be_visible()
        await petitioner.page.get_by_role("radio", name=t["satisfied"], exact=True).check()
        rated = await petitioner.click(petitioner.page.get_by_role("button", name=t["rate"], exact=True))
        await petitioner.look("track-rated", rated)
        await expect(petitioner.page.get_by_role("status")).to_contain_text(t["rated"])
        await expect(petitioner.page.get_by_role("button", name=t["rate"])).to_have_count(0)

        # A second rating (the other device's form, still on its screen) is refused.
        await second_tab.page.get_by_role("radio", name=t["unsatisfied"], exact=True).check()
        again = await second_tab.click(second_tab.page.get_by_role("button", name=t["rate"], exact=True))
        await second_tab.look("track-rated-again", again, 409)
        await expect(second_tab.page.get_by_role("status")).to_contain_text(t["failed"])
    finally:
        await petitioner.close()
        await second_tab.close()
    assert (await stack.intake.get(f"/v1/matters/{code}")).json()["rating"] == "satisfied"


async def test_a_leader_reads_everything_and_changes_nothing(running: Stack) -> None:
    stack = running
    matter = await _waiting_matter(stack)
    matter_id = matter["matter_id"]
    leader = await Person.open(stack.browser, stack.console)
    changes = "form[method=post i]:not([action='/signout'])"  # what a person could change anything with
    try:
        await leader.look("queue-leader", await leader.sign_in(LEADER))
        page = leader.page
        link = page.locator(f"a[href='/matters/{matter_id}']")
        await expect(link).to_have_count(1)
        await expect(page.locator(changes).filter(visible=True)).to_have_count(0)

        # Every other page the workbench links to, once.
        paths = await page.eval_on_selector_all("a[href^='/']", "(links) => links.map((a) => a.getAttribute('href'))")
        for path in sorted({p for p in paths if p != "/" and not p.startswith(("/matters/", "/?"))}):
            await leader.look("leader-" + path.split("?")[0].strip("/").replace("/", "-"), await leader.goto(path))
            await expect(page.locator(changes).filter(visible=True)).to_have_count(0)
        await leader.goto("/")

        await leader.look("matter-leader", await leader.click(link))
        shown = await page.locator("main").inner_text()
        assert matter_id[:8] in shown, "the leader reads the matter (named by its id's first characters or more)"
        person = matter["petitioner"]
        assert person["id_number"] not in shown and person["phone"] not in shown, "a leader sees personal data masked"
        await expect(page.locator(changes).filter(visible=True)).to_have_count(0)

        # A forged change with the leader's own valid CSRF token: routing refuses the leader.
        fields = {"unit": "city-5103", "reason": "领导直接交办", "csrf": await leader.csrf()}
        refused = await leader.forge(f"/matters/{matter_id}/assign", fields)
        await leader.look("assign-refused-leader", refused, 403)
        await expect(page.get_by_role("status")).to_contain_text(leader.t["refused"])
    finally:
        await leader.close()
    view = await _routing_view(stack, matter_id)
    assert (view["status"], view["unit"]) == ("awaiting-assignment", None)
    as_leader = _bearer(CONSOLE_KEY) | _as_staff(LEADER, Role.LEADER, None)
    assert (await stack.routing.get(f"/v1/matters/{matter_id}", headers=as_leader)).status_code == 200
    sent = await stack.routing.post(
        f"/v1/matters/{matter_id}/reassign", json={"unit": "city-5103", "reason": "x"}, headers=as_leader
    )
    assert sent.status_code == 403, sent.text


async def test_a_persons_headers_from_any_caller_but_the_console_are_refused(running: Stack) -> None:
    stack = running
    matter = await _waiting_matter(stack)
    matter_id = matter["matter_id"]
    person = _as_staff(CLERK, Role.CLERK, Office.LETTERS_2)
    reassign = {"unit": "city-5103", "reason": "冒名交办"}
    calls = [
        (stack.routing, "GET", f"/v1/matters/{matter_id}", None),
        (stack.routing, "GET", "/v1/queues/letters-2", None),
        (stack.routing, "POST", f"/v1/matters/{matter_id}/reassign", reassign),
        (stack.supervision, "POST", f"/v1/matters/{matter_id}/deadlines/acceptance/pause", {"reason": "冒名听证"}),
    ]
    callers = {
        "the operator's key": (_bearer(OPERATOR_KEY), 403),
        "a unit's key": (_bearer(UNIT_KEYS["city-5103"]), 401),
        "no key": ({}, 401),
        "a wrong key": (_bearer(CONSOLE_KEY + "x"), 401),
    }
    for client, method, path, body in calls:
        for caller, (key, expected) in callers.items():
            answer = await client.request(method, path, json=body, headers=key | person)
            assert answer.status_code == expected, f"{method} {path} with {caller}: {answer.status_code} {answer.text}"
    # Without the person's headers, the operator's key reads (so the 403 above is the forged person's).
    assert (await stack.routing.get(f"/v1/matters/{matter_id}", headers=OPERATOR)).status_code == 200
    view = await _routing_view(stack, matter_id)
    assert (view["status"], view["unit"]) == ("awaiting-assignment", None)
    assert all(h["actor"] == "routing" for h in view["history"]), view["history"]


async def test_sign_in_is_limited_then_served_csrf_is_refused_and_an_idle_session_ends(running: Stack) -> None:
    stack = running
    person = await Person.open(stack.browser, stack.console)
    try:
        t = person.t
        # A post from a page that is not the sign-in form (no token, or another one) is refused.
        await person.goto("/")
        for forged in ({}, {"csrf": "not-the-forms-token"}, {"csrf": ""}):
            sent_form: dict[str, str | float | bool] = {"username": LOCKED, "password": PASSWORD, **forged}
            sent = await person.page.request.post(stack.console + "/signin", form=sent_form)
            assert sent.status == 403, forged
        await person.goto("/")  # each refusal gave the browser a new form token: the form as it is now

        # A burst of wrong passwords: each refused, then the account limited, even with the right one.
        for attempt in range(MAX_FAILED):
            await person.look("signin-wrong", await person.sign_in(LOCKED, f"wrong password {attempt}"), 401)
            await expect(person.page.get_by_role("status")).to_contain_text(t["wrong"])
        limited = await person.sign_in(LOCKED)
        await person.look("signin-limited", limited, 429)
        await expect(person.page.get_by_role("status")).to_contain_text(t["limited"])
        wait = int(limited.headers["retry-after"])
        assert 1 <= wait <= WINDOW_S + 1
        await asyncio.sleep(wait + 0.5)
        served = await person.sign_in(LOCKED)
        await person.look("queue-after-limit", served)
        await expect(person.page.get_by_role("button", name=t["sign_out"])).to_be_visible()

        # Signed in, a change without the session's token is refused (and the session goes on).
        stale = await person.forge("/signout", {"csrf": "not-the-sessions-token"})
        await person.look("signout-stale", stale, 403)
        await person.goto("/")
        await expect(person.page.get_by_role("button", name=t["sign_out"])).to_be_visible()
    finally:
        await person.close()

    # The idle console's session, unused since the module started, has ended: back to signing in.
    await asyncio.sleep(max(0.0, stack.idle_since + IDLE_S + 2 - time.monotonic()))
    idle = await Person.open(stack.browser, stack.idle_console)
    try:
        await idle.context.add_cookies(stack.idle_session["cookies"])
        expired = await idle.goto("/")
        await idle.look("session-expired", expired)
        await expect(idle.page.get_by_label(idle.t["password"], exact=True)).to_be_visible()
        await expect(idle.page.get_by_role("button", name=idle.t["sign_out"])).to_have_count(0)
        await idle.sign_in(IDLE)  # and a new session works
        await expect(idle.page.get_by_role("button", name=idle.t["sign_out"])).to_be_visible()
    finally:
        await idle.close()


def test_no_personal_data_or_password_in_any_log(running: Stack) -> None:
    stack = running
    if not stack.personal:
        pytest.skip("no flow ran before this one: no personal data was sent to look for")
    for name, log in stack.logs.items():
        if name in ("mail", "sms"):
            continue  # the stand-ins of the mail server and the SMS gateway: they receive what is sent
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        for secret in [*stack.personal, PASSWORD]:
            assert secret not in text, f"{name}'s log holds personal data or a password"

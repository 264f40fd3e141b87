"""The console on the real broker and database, with intake, routing and supervision in this process: people sign
in (argon2 passwords, signed session cookies, CSRF on every change, sign-in attempts limited per account and
address), work their office's queue, and act as themselves; the services, not the pages, decide what each may do."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from xinfang_console import accounts
from xinfang_console.app import MIGRATIONS as CONSOLE_MIGRATIONS
from xinfang_console.app import create_service as create_console
from xinfang_console.i18n import WORDS
from xinfang_console.settings import ConsoleSettings

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.pipeline import UPSTREAM, common_settings, prepare, upstream
from tests.integration.processes import private_database
from tests.staff import staff_headers
from xinfang_intake.channel_keys import add_key
from xinfang_notify.app import create_service as create_notify
from xinfang_notify.settings import NotifySettings
from xinfang_shared.contracts.labels import name_of
from xinfang_shared.contracts.reference import CITIES, Channel, Office
from xinfang_shared.db import migrate_dsn
from xinfang_shared.service import Service
from xinfang_shared.staff import Role
from xinfang_stats.app import create_service as create_stats
from xinfang_stats.settings import StatsSettings

RUN = uuid.uuid4().hex[:8]
CHANNEL_KEY, OPERATOR, CONSOLE = f"c-channel-{RUN}", f"c-operator-{RUN}", f"c-console-{RUN}"
# Reception's key: made for the console's system (intake's console_system), for the visit channel.
RECEPTION_KEY = f"c-reception-{RUN}"
UNIT_KEYS = {unit: f"c-{unit}-{RUN}" for unit in CITIES}
PASSWORD = "correct horse battery"
WINDOW_S = 3


@dataclass
class Console:
    services: dict[str, Service]
    database: str
    intake: httpx.AsyncClient
    routing: httpx.AsyncClient

    def browser(self) -> httpx.AsyncClient:
        """A person's browser: its own cookies."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.services["console"].api), base_url="http://console"
        )


@pytest.fixture(scope="module")
async def console(stack: dict[str, str], bootstrap: str) -> AsyncIterator[Console]:
    async with private_database(stack["DATABASE_URL"]) as database:
        common = common_settings(database, bootstrap, OPERATOR) | {"console_api_key": SecretStr(CONSOLE)}
        groups = await prepare(database, bootstrap, f"test-console-{RUN}", (*UPSTREAM, "notify", "stats"))
        services = upstream(groups, common, channel_key=CHANNEL_KEY, unit_keys=UNIT_KEYS)
        # Notices cannot go (nothing listens there): they wait, and the matter page lists them with their channel.
        services["notify"] = create_notify(
            NotifySettings(
                kafka_group_id=groups["notify"],
                smtp_url="smtp://127.0.0.1:9",
                sms_gateway_url="http://127.0.0.1:9",
                sms_access_key=SecretStr(f"sms-{RUN}"),
                sms_receipt_token=SecretStr(f"receipt-{RUN}"),
                **common,
            )
        )
        services["stats"] = create_stats(StatsSettings(kafka_group_id=groups["stats"], **common))
        settings = ConsoleSettings(
            database_url=database,
            console_api_key=SecretStr(CONSOLE),
            session_secret=SecretStr(f"sessions-{RUN}"),
            signin_window_s=WINDOW_S,
            signin_max_per_account=3,
            intake_channel_key=SecretStr(RECEPTION_KEY),
            _env_file=None,  # type: ignore[call-arg]
        )
        await migrate_dsn(database, settings.db_schema, CONSOLE_MIGRATIONS)
        transports = {name: httpx.ASGITransport(app=services[name].api) for name in services}
        services["console"] = create_console(settings, transports=transports)
        conn = await asyncpg.connect(database, server_settings={"search_path": "console"})
        try:
            for user, role, office in [
                ("li.clerk", Role.CLERK, Office.LETTERS_2),
                ("chen.head", Role.HEAD, Office.LETTERS_2),
                ("wang.other", Role.CLERK, Office.ONLINE),
                ("zhao.leader", Role.LEADER, None),
                ("sun.reception", Role.CLERK, Office.RECEPTION),
                ("gone", Role.CLERK, Office.LETTERS_2),
            ]:
                await accounts.add(conn, user, role, office, PASSWORD)
            await accounts.disable(conn, "gone")
        finally:
            await conn.close()
        conn = await asyncpg.connect(database, server_settings={"search_path": "intake"})
        try:
            await add_key(conn, system="console", channels=[Channel.VISIT], key=RECEPTION_KEY)
        finally:
            await conn.close()
        for service in services.values():
            await service.start()
        intake = httpx.AsyncClient(transport=transports["intake"], base_url="http://intake")
        routing = httpx.AsyncClient(transport=transports["routing"], base_url="http://routing")
        try:
            yield Console(services, database, intake, routing)
        finally:
            await intake.aclose()
            await routing.aclose()
            for service in reversed(services.values()):
                await service.stop()


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has a form with its CSRF token"
    return found.group(1)


async def _sign_in(browser: httpx.AsyncClient, user: str, password: str = PASSWORD) -> httpx.Response:
    page = await browser.get("/")
    return await browser.post("/signin", data={"username": user, "password": password, "csrf": _csrf(page.text)})


async def _matter_in_letters_2(console: Console) -> dict[str, Any]:
    body = factories.submission(location=None)  # no location: routing leaves it in letters-2's queue
    answer = await console.intake.post("/v1/submissions", json=body, headers={"Authorization": f"Bearer {CHANNEL_KEY}"})
    assert answer.status_code in (201, 202), answer.text
    matter: dict[str, Any] = answer.json() | {"petitioner": body["petitioner"]}
    routing = console.services["routing"]

    async def waiting() -> bool:
        status = await routing.pool.fetchval(
            "SELECT status FROM matters WHERE matter_id = $1", uuid.UUID(matter["matter_id"])
        )
        return bool(status == "awaiting-assignment")

    await eventually(waiting, timeout=60)
    return matter


async def test_a_clerk_assigns_from_the_queue_as_themselves_and_others_cannot(console: Console) -> None:
    matter = await _matter_in_letters_2(console)
    matter_id = matter["matter_id"]
    async with console.browser() as clerk, console.browser() as stranger, console.browser() as leader:
        assert (await _sign_in(clerk, "li.clerk")).status_code == 303
        queue = await clerk.get("/")
        assert queue.status_code == 200 and matter_id in queue.text
        assert "default-src 'none'" in queue.headers["content-security-policy"]
        assert "httponly" in (await _sign_in(stranger, "wang.other")).headers["set-cookie"].lower()

        # Another office's clerk: not in their queue, the matter refused, the assignment refused by routing.
        theirs = await stranger.get("/")
        assert matter_id not in theirs.text
        assert (await stranger.get(f"/matters/{matter_id}")).status_code == 403
        form = {"unit": "city-5103", "reason": "地址在自贡", "csrf": _csrf(theirs.text)}
        assert (await stranger.post(f"/matters/{matter_id}/assign", data=form)).status_code == 403

        # A leader sees every queue and has no form to change anything; the services refuse them too.
        await _sign_in(leader, "zhao.leader")
        overview = await leader.get("/")
        assert matter_id in overview.text and "/assign" not in overview.text
        form = {"unit": "city-5103", "reason": "地址在自贡", "csrf": _csrf(overview.text)}
        assert (await leader.post(f"/matters/{matter_id}/assign", data=form)).status_code == 403

        # A change without the session's CSRF token is refused, whoever is signed in.
        stale = {"unit": "city-5103", "reason": "地址在自贡", "csrf": "not-the-token"}
        assert (await clerk.post(f"/matters/{matter_id}/assign", data=stale)).status_code == 403
        assigned = await clerk.post(
            f"/matters/{matter_id}/assign",
            data={"unit": "city-5103", "reason": "地址在自贡", "csrf": _csrf(queue.text)},
        )
        assert assigned.status_code == 303, assigned.text
        page = await clerk.get(f"/matters/{matter_id}")
        assert page.status_code == 200 and "staff:li.clerk" in page.text
    view = await console.services["routing"].pool.fetchrow(
        "SELECT unit, status FROM matters WHERE matter_id = $1", uuid.UUID(matter_id)
    )
    assert (view["unit"], view["status"]) == ("city-5103", "transferred")

    # The petitioner's page: the code shows the status and the unit, and no person's data.
    async def intake_knows_the_unit() -> bool:
        known = await console.intake.get(f"/v1/matters/{matter['tracking_code']}")
        return known.status_code == 200 and known.json().get("unit") == "city-5103"

    await eventually(intake_knows_the_unit, timeout=60)
    async with console.browser() as petitioner:
        found = await petitioner.get("/track", params={"code": matter["tracking_code"]})
        # In plain words: the unit's name and the status's, never their codes.
        assert found.status_code == 200 and name_of("zh-CN", "unit", "city-5103") in found.text, found.text
        assert name_of("zh-CN", "status", "transferred") in found.text and "city-5103" not in found.text
        assert matter["petitioner"]["name"] not in found.text and matter["petitioner"]["phone"] not in found.text
        missing = await petitioner.get("/track", params={"code": "0000-0000-0000-0000"})
        assert missing.status_code == 404


async def test_sign_in_is_limited_per_account_and_served_again_after_the_window(console: Console) -> None:
    async with console.browser() as browser:
        for _ in range(3):
            assert (await _sign_in(browser, "chen.head", "wrong password!")).status_code == 401
        limited = await _sign_in(browser, "chen.head")  # even the right password, while limited
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        await asyncio.sleep(WINDOW_S + 0.5)
        assert (await _sign_in(browser, "chen.head")).status_code == 303
    async with console.browser() as browser:
        # A disabled account and an unknown one are refused alike.
        assert (await _sign_in(browser, "gone")).status_code == 401
        assert (await _sign_in(browser, "nobody.at.all")).status_code == 401


async def test_login_csrf_forged_cookies_sign_out_and_expiry(console: Console) -> None:
    async def signed_in_with(cookie: str) -> bool:
        """Whether a browser holding only this session cookie is signed in."""
        async with console.browser() as other:
            page = await other.get("/", headers={"cookie": f"xf_session={cookie}"})
        return 'name="password"' not in page.text

    async with console.browser() as browser:
        # The sign-in form's own token: a post from another site has none.
        cross_site = await browser.post("/signin", data={"username": "li.clerk", "password": PASSWORD})
        assert cross_site.status_code == 403
        assert (await _sign_in(browser, "li.clerk")).status_code == 303
        signed = browser.cookies["xf_session"]
        assert await signed_in_with(signed)
        # A made-up or altered session cookie signs nobody in.
        assert not await signed_in_with("made-up." + "0" * 64)
        assert not await signed_in_with(signed[:-1] + ("0" if signed[-1] != "0" else "1"))
        assert not await signed_in_with(signed.rpartition(".")[0])  # the token without its signature

        # The session ends at its expiry (here: made due in the database).
        conn = await asyncpg.connect(console.database, server_settings={"search_path": "console"})
        try:
            await conn.execute("UPDATE sessions SET expires_at = now() WHERE username = 'li.clerk'")
        finally:
            await conn.close()
        assert not await signed_in_with(signed)
        async with console.browser() as other:
            ended = await other.get("/", headers={"cookie": f"xf_session={signed}"})
        assert WORDS["zh-CN"]["expired"] in ended.text, "the sign-in page says the session ended"

    async with console.browser() as browser:
        # Sign out ends it for good: the old cookie is worth nothing after.
        await _sign_in(browser, "li.clerk")
        kept = browser.cookies["xf_session"]
        assert await signed_in_with(kept)
        out = await browser.post("/signout", data={"csrf": _csrf((await browser.get("/")).text)})
        assert out.status_code == 303
        assert not await signed_in_with(kept)


def _visit(page: str, **fields: str) -> dict[str, str]:
    """The reception form as a clerk fills it in (a group visit of 30 with two representatives)."""
    nonce, at = re.search(r'name="nonce" value="([^"]+)"', page), re.search(r'name="at" value="([^"]+)"', page)
    assert nonce and at
    person, one, two = (factories.submission()["petitioner"] for _ in range(3))
    return {
        "csrf": _csrf(page),
        "nonce": nonce.group(1),
        "at": at.group(1),
        "name": person["name"],
        "id_number": person["id_number"],
        "phone": person["phone"],
        "headcount": "30",
        "rep1_name": one["name"],
        "rep1_id": one["id_number"],
        "rep1_phone": one["phone"],
        "rep2_name": two["name"],
        "rep2_id": two["id_number"],
        "rep2_phone": two["phone"],
        "kind": "complaint",
        "place": "chengdu",
        "region_code": "510104",
        "title": "集体反映拖欠工资",
        "content": "某公司拖欠三十名工人工资半年。",
    } | fields


async def test_reception_registers_a_group_visit_once_and_the_visitor_tracks_and_rates_it(console: Console) -> None:
    async with console.browser() as outsider, console.browser() as clerk:
        await _sign_in(outsider, "li.clerk")
        assert (await outsider.get("/reception")).status_code == 403, "only Visit Reception registers visits"
        await _sign_in(clerk, "sun.reception")
        form_page = (await clerk.get("/reception")).text
        assert (await outsider.post("/reception", data=_visit(form_page))).status_code == 403, "not their CSRF token"

        wrong = await clerk.post("/reception", data=_visit(form_page, id_number="123"))
        assert wrong.status_code == 422 and "petitioner.id_number" in wrong.text
        # A form whose opening time was changed in the browser (to backdate the visit) is registered as of now.
        backdated = _visit(form_page, at="2001-01-01T09:00:00+00:00", nonce="backdated")
        answered = await clerk.post("/reception", data=backdated)
        assert answered.status_code == 200, answered.text
        taken = await console.services["intake"].pool.fetchval(
            "SELECT min(submitted_at) FROM matters WHERE channel = 'visit' AND submitted_at >= now() - interval '1 day'"
        )
        never = await console.services["intake"].pool.fetchval(
            "SELECT count(*) FROM matters WHERE submitted_at < '2002-01-01'"
        )
        assert taken is not None and never == 0, "the backdated time was not believed"
        filled = _visit(form_page)
        first = await clerk.post("/reception", data=filled)
        assert first.status_code == 200, first.text
        code = re.search(r'class="code"[^>]*>([^<]+)<', first.text)
        assert code, "the page shows the tracking code"
        again = await clerk.post("/reception", data=filled)  # the same form sent twice (a double click)
        assert code.group(1) in again.text, "registered once: the same code"
    tracking_code = code.group(1)
    async with console.browser() as visitor:
        page = await visitor.get("/track", params={"code": tracking_code})
        assert page.status_code == 200 and "/track/rate" not in page.text, "no rating before an opinion"

    # The unit it went to concludes it with an opinion; then the visitor rates it, once.
    registered = (await console.intake.get(f"/v1/matters/{tracking_code}")).json()

    async def transferred() -> bool:
        row = await console.services["routing"].pool.fetchrow(
            "SELECT matter_id, unit FROM matters WHERE tracking_code = $1", tracking_code
        )
        return row is not None and row["unit"] is not None

    await eventually(transferred, timeout=60)
    row = await console.services["routing"].pool.fetchrow(
        "SELECT matter_id, unit FROM matters WHERE tracking_code = $1", tracking_code
    )
    unit, matter_id = row["unit"], str(row["matter_id"])
    # Who registered it, as intake believed it from the console's own channel key: first in its history, on the
    # matter page too (an operator reads it here; the clerk's office does not handle the matter).
    received_by = await console.services["intake"].pool.fetchval(
        "SELECT received_by FROM matters WHERE tracking_code = $1", tracking_code
    )
    assert received_by == "staff:sun.reception"
    history = (
        await console.routing.get(f"/v1/matters/{matter_id}", headers={"Authorization": f"Bearer {OPERATOR}"})
    ).json()["history"]
    assert (history[0]["action"], history[0]["actor"]) == ("received", "staff:sun.reception"), history
    async with console.browser() as leader:
        await _sign_in(leader, "zhao.leader")
        page = await leader.get(f"/matters/{matter_id}")
        assert page.status_code == 200 and "staff:sun.reception" in page.text
        assert name_of("zh-CN", "history_action", "received") in page.text, "labelled"
    for action, extra in (("accepted", {}), ("concluded", {"opinion": {"result": "support", "text": "已补发工资"}})):
        body = {"matter_id": matter_id, "unit": unit, "action": action, "at": datetime.now(UTC).isoformat(), **extra}
        sent = await console.routing.post(
            f"/v1/units/{unit}/feedback", json=body, headers={"Authorization": f"Bearer {UNIT_KEYS[unit]}"}
        )
        assert sent.status_code == 202, sent.text

    async def opinion_known() -> bool:
        return bool((await console.intake.get(f"/v1/matters/{tracking_code}")).json().get("opinion"))

    await eventually(opinion_known, timeout=60)
    async with console.browser() as visitor:
        page = await visitor.get("/track", params={"code": tracking_code})
        assert "/track/rate" in page.text and "已补发工资" in page.text
        stale = await visitor.post("/track/rate", data={"csrf": "forged", "code": tracking_code, "rating": "satisfied"})
        assert stale.status_code == 403
        rated = await visitor.post(
            "/track/rate", data={"csrf": _csrf(page.text), "code": tracking_code, "rating": "satisfied"}
        )
        assert rated.status_code == 200 and "/track/rate" not in rated.text
    after = (await console.intake.get(f"/v1/matters/{tracking_code}")).json()
    assert after["rating"] == "satisfied" and registered["status"] != after["status"]
    once_more = await console.intake.post(f"/v1/matters/{tracking_code}/rating", json={"rating": "unsatisfied"})
    assert once_more.status_code == 409, "rated once"


async def test_the_matter_page_deadlines_notices_and_only_the_actions_a_person_may_take(console: Console) -> None:
    matter = await _matter_in_letters_2(console)
    matter_id, name = matter["matter_id"], matter["petitioner"]["name"]
    async with (
        console.browser() as clerk,
        console.browser() as head,
        console.browser() as leader,
        console.browser() as stranger,
    ):
        for browser, user in (
            (clerk, "li.clerk"),
            (head, "chen.head"),
            (leader, "zhao.leader"),
            (stranger, "wang.other"),
        ):
            assert (await _sign_in(browser, user)).status_code == 303

        # The queue in words: its kind and how long the office has left to forward it.
        queue = (await clerk.get("/")).text
        assert matter_id in queue and name_of("zh-CN", "kind", "complaint") in queue and "剩余" in queue

        # The clerk of the handling office: personal data in clear, the forwarding deadline, the assign form.
        page = (await clerk.get(f"/matters/{matter_id}")).text
        assert name in page and name_of("zh-CN", "deadline", "routing") in page
        assert f"/matters/{matter_id}/assign" in page
        # A leader reads it, masked, and is offered nothing; another office's clerk is refused.
        overview = await leader.get(f"/matters/{matter_id}")
        assert overview.status_code == 200 and name not in overview.text and name[0] in overview.text
        assert "/assign" not in overview.text and "/deadlines/" not in overview.text
        assert (await stranger.get(f"/matters/{matter_id}")).status_code == 403
        # Nor the petitioner's tracking code, which would let its holder act as the petitioner: the office only.
        as_leader = staff_headers(CONSOLE, "zhao.leader", "leader")
        as_clerk = staff_headers(CONSOLE, "li.clerk", "clerk", "letters-2")
        read = await console.routing.get(f"/v1/matters/{matter_id}", headers=as_leader)
        assert read.status_code == 200 and read.json()["tracking_code"] is None
        listed = (await console.routing.get("/v1/queues/letters-2", headers=as_leader)).json()
        assert listed and all(entry["tracking_code"] is None for entry in listed)
        seen = (await console.routing.get(f"/v1/matters/{matter_id}", headers=as_clerk)).json()
        assert seen["tracking_code"] == matter["tracking_code"]

        sent = {"csrf": _csrf(page), "unit": "city-5101", "reason": "属地管理", "from": "matter"}
        done = await clerk.post(f"/matters/{matter_id}/assign", data=sent)
        assert done.status_code == 303 and done.headers["location"] == f"/matters/{matter_id}?done=1"

        # The unit accepts: handling runs, and only the head of the office is offered (and allowed) an extension.
        accepted = {
            "matter_id": matter_id,
            "unit": "city-5101",
            "action": "accepted",
            "at": datetime.now(UTC).isoformat(),
        }
        answer = await console.routing.post(
            "/v1/units/city-5101/feedback", json=accepted, headers={"Authorization": f"Bearer {UNIT_KEYS['city-5101']}"}
        )
        assert answer.status_code == 202, answer.text

        async def handling_runs() -> bool:
            return "/deadlines/handling/extend" in (await head.get(f"/matters/{matter_id}")).text

        await eventually(handling_runs, timeout=60)
        clerk_page = (await clerk.get(f"/matters/{matter_id}")).text
        assert "/deadlines/handling/extend" not in clerk_page, "extensions are the head's"
        forged = await clerk.post(
            f"/matters/{matter_id}/deadlines/handling/extend",
            data={"csrf": _csrf(clerk_page), "days": "10", "reason": "需要现场核查"},
        )
        assert forged.status_code == 403, "supervision refuses a clerk's extension"
        head_page = (await head.get(f"/matters/{matter_id}")).text
        extended = await head.post(
            f"/matters/{matter_id}/deadlines/handling/extend",
            data={"csrf": _csrf(head_page), "days": "10", "reason": "需要现场核查"},
        )
        assert extended.status_code == 303, extended.text
        after = (await head.get(f"/matters/{matter_id}")).text
        assert "(+10天)" in after and "/deadlines/handling/extend" not in after, "extended once: no more offered"
        too_often = await head.post(
            f"/matters/{matter_id}/deadlines/handling/extend",
            data={"csrf": _csrf(after), "days": "5", "reason": "再次延期"},
        )
        assert too_often.status_code == 409, "the rules allow one extension"

        # The notices sent about it, each with its channel (nothing is delivered here: they wait or fail).
        async def notices_listed() -> bool:
            text = (await clerk.get(f"/matters/{matter_id}")).text
            return (
                name_of("zh-CN", "notice_channel", "sms") in text or name_of("zh-CN", "notice_channel", "email") in text
            )

        await eventually(notices_listed, timeout=60)

        # Deadlines by stage: 150 days on, the matter's handling is overdue in letters-2's list and the leader's,
        # and not in another office's.
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=console.services["supervision"].api), base_url="http://supervision"
        ) as supervision:
            advanced = await supervision.post(
                "/v1/admin/clock/advance",
                json={"seconds": 150 * 86400},
                headers={"Authorization": f"Bearer {OPERATOR}"},
            )
            assert advanced.status_code == 200, advanced.text
        own = await clerk.get("/deadlines", params={"stage": "overdue", "office": "online"})
        assert own.status_code == 200 and matter_id in own.text, "their own office's, whatever the form asks"
        assert matter_id in (await leader.get("/deadlines", params={"stage": "overdue"})).text
        assert matter_id not in (await stranger.get("/deadlines", params={"stage": "overdue"})).text


async def test_the_dashboard_comes_with_the_persons_session_and_no_key(console: Console) -> None:
    async with console.browser() as leader, console.browser() as nobody:
        assert (await _sign_in(leader, "zhao.leader")).status_code == 303
        page = await leader.get("/dashboard/")
        assert page.status_code == 200 and 'name="xinfang-session"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"], "the dashboard's own policy"
        assert (await leader.get("/dashboard/static/app.js")).status_code == 200
        today = datetime.now(UTC).date().isoformat()
        figures = await leader.get(
            "/dashboard/v1/stats/summary", params={"group_by": "channel", "from": today, "to": today}
        )
        assert figures.status_code == 200 and figures.json()["group_by"] == "channel"
        assert (await leader.get("/dashboard/health")).status_code == 404, "only the page, its files and figures"
        # Nor by a path that climbs out of them once decoded, nor one carrying its own query.
        for sneaky in ("v1/stats/..%2f..%2fmetrics", "static/..%2f..%2fopenapi.json", "v1/stats/x%3Fa=1%23", "static/"):
            assert (await leader.get(f"/dashboard/{sneaky}")).status_code == 404, sneaky
        assert (await nobody.get("/dashboard/v1/stats/summary", params={"group_by": "channel"})).status_code == 401
        assert "/signin" in (await nobody.get("/dashboard/")).text, "no session: the sign-in page"

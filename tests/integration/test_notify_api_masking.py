"""Notify's API against a real PostgreSQL: no address or phone in clear in any answer, even where a server's or
gateway's refusal quoted one, or an operator's name is an address; the bureau's staff list a matter's notices
through the console, each naming its channel, held and pending ones too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from tests.integration.conftest import schema_pool
from tests.staff import staff_headers
from xinfang_notify import store
from xinfang_notify.api import build_router
from xinfang_notify.app import MIGRATIONS
from xinfang_notify.registry import Contacts, Notice, RecipientKind
from xinfang_notify.rules import Planned
from xinfang_notify.settings import NotifySettings
from xinfang_shared.service import Service

pytestmark = pytest.mark.integration
OPERATOR = "operator-" + uuid.uuid4().hex
CONSOLE = "console-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {OPERATOR}"}
EMAIL, PHONE = "zhang.san@example.org", "13812345678"
IN_CLEAR = (EMAIL, "zhang.san", PHONE, "138 1234 5678", "1234 5678")


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    async with schema_pool(database, "notify_api", MIGRATIONS) as p:
        yield p


@pytest.fixture
async def http(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """Notify's routes as the service serves them (its operator key, its error handlers), on this pool."""
    settings = NotifySettings(
        _env_file=None,  # type: ignore[call-arg]
        operator_api_key=SecretStr(OPERATOR),
        console_api_key=SecretStr(CONSOLE),
    )
    service = Service(settings, migrations=MIGRATIONS, title="notify")
    contacts = Contacts.load(settings.contacts_file)
    service.api.include_router(build_router(service, lambda: pool, "gateway-token", contacts))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.api), base_url="http://notify") as client:
        yield client


async def _failed(pool: asyncpg.Pool, matter_id: uuid.UUID, reasons: dict[Notice, tuple[str, str, str]]) -> None:
    planned = [Planned(matter_id, notice, RecipientKind.PETITIONER, "", False) for notice in reasons]
    async with pool.acquire() as conn:
        await store.plan(conn, planned)
    for n in await store.claim(pool, len(planned), timedelta(seconds=60)):
        channel, masked, reason = reasons[Notice(n.notice)]
        await store.failed(pool, n, reason, channel=channel, masked=masked)


async def test_no_address_or_phone_in_clear_in_any_answer(pool: asyncpg.Pool, http: httpx.AsyncClient) -> None:
    matter_id = uuid.uuid4()
    await _failed(
        pool,
        matter_id,
        {
            Notice.RECEIPT: ("email", "z***@example.org", f"recipient refused: 550 <{EMAIL}> unknown user"),
            Notice.ACCEPTED: ("sms", "138****5678", f"SMS gateway refused it: isv.BLACK_KEY_CONTROL_LIMIT {PHONE}"),
            Notice.OPINION: ("sms", "138****5678", "SMS gateway refused it: isv.MOBILE_NUMBER_ILLEGAL 138 1234 5678"),
        },
    )

    listed = await http.get("/v1/notifications", params={"matter_id": str(matter_id)}, headers=AUTH)
    dead = await http.get("/v1/notifications/failed", headers=AUTH)
    for answer in (listed, dead):
        assert answer.status_code == 200
        assert len(answer.json()) == 3
        assert not [s for s in IN_CLEAR if s in answer.text], answer.text
    errors = {v["notice"]: v["error"] for v in listed.json()}
    assert errors["receipt"] == "recipient refused: 550 <[redacted]> unknown user", "the reason itself is kept"
    assert errors["accepted"] == "SMS gateway refused it: isv.BLACK_KEY_CONTROL_LIMIT [redacted]"
    assert errors["opinion"] == "SMS gateway refused it: isv.MOBILE_NUMBER_ILLEGAL [redacted]"
    assert {v["address"] for v in listed.json()} == {"z***@example.org", "138****5678"}

    # Sent again by an operator who gave an address as their name: the list names them masked too.
    retried = await http.post(
        f"/v1/notifications/{listed.json()[0]['id']}/retry", headers={**AUTH, "X-Operator": EMAIL}
    )
    assert retried.status_code == 202 and EMAIL not in retried.text
    again = await http.get("/v1/notifications", params={"matter_id": str(matter_id)}, headers=AUTH)
    assert "retried by [redacted]" in [v["error"] for v in again.json()]
    assert not [s for s in IN_CLEAR if s in again.text], again.text


def _staff(user: str, role: str, office: str | None = None) -> dict[str, str]:
    return staff_headers(CONSOLE, user, role, office)


async def _matter(pool: asyncpg.Pool, matter_id: uuid.UUID, *, by_email: bool) -> None:
    """What notify keeps of a registered matter (its sealed contact does not matter here)."""
    await pool.execute(
        "INSERT INTO matters (matter_id, tracking_code, language, contact, by_email, headcount, registered_at)"
        " VALUES ($1, $2, 'zh-CN', $3, $4, 1, $5)",
        matter_id,
        uuid.uuid4().hex[:16],
        b"sealed",
        by_email,
        datetime.now(UTC),
    )


async def test_staff_list_a_matter_s_notices_each_naming_its_channel_held_and_pending_ones_too(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    by_sms, by_email, unseen = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _matter(pool, by_sms, by_email=False)
    await _matter(pool, by_email, by_email=True)
    planned = [
        Planned(by_sms, Notice.RECEIPT, RecipientKind.PETITIONER, "petitioner", False),
        Planned(by_sms, Notice.TRANSFERRED, RecipientKind.PETITIONER, "petitioner", False),
        Planned(by_sms, Notice.OVERDUE, RecipientKind.UNIT, "city-5101", False),  # its inbox topic
        Planned(by_sms, Notice.DUE_SOON, RecipientKind.UNIT, "dept-health", False),  # its duty mailbox
        Planned(by_sms, Notice.URGENT_VISIT, RecipientKind.OFFICE, "guidance", True),
        Planned(by_email, Notice.RECEIPT, RecipientKind.PETITIONER, "petitioner", False),
        Planned(unseen, Notice.RECEIPT, RecipientKind.PETITIONER, "petitioner", False),
    ]
    async with pool.acquire() as conn:
        await store.plan(conn, planned)
    # The receipt waits out quiet hours: held, with the channel and the masked number the sender chose.
    receipt = next(n for n in await store.claim(pool, 100, timedelta(seconds=60)) if n.key == planned[0].key)
    quiet_until = datetime.now(UTC) + timedelta(hours=8)
    await store.later(pool, receipt, quiet_until, status="held", counts=False, channel="sms", masked="138****5678")
    # The others were claimed with it: given back untried.
    await pool.execute("UPDATE notifications SET lease_until = NULL, attempts = 0 WHERE status = 'pending'")

    clerk = await http.get(
        "/v1/notifications", params={"matter_id": str(by_sms)}, headers=_staff("li", "clerk", "online")
    )
    assert clerk.status_code == 200, clerk.text
    shown = {(v["notice"], v["recipient_kind"]): v for v in clerk.json()}
    assert (shown["receipt", "petitioner"]["status"], shown["receipt", "petitioner"]["channel"]) == ("held", "sms")
    assert shown["receipt", "petitioner"]["address"] == "138****5678"
    assert {k: v["channel"] for k, v in shown.items()} == {
        ("receipt", "petitioner"): "sms",
        ("transferred", "petitioner"): "sms",  # no e-mail address given: SMS
        ("overdue", "unit"): "topic",
        ("due-soon", "unit"): "email",
        ("urgent-visit", "office"): "email",
    }
    assert {v["status"] for k, v in shown.items() if k != ("receipt", "petitioner")} == {"pending"}
    emailed = await http.get("/v1/notifications", params={"matter_id": str(by_email)}, headers=_staff("zhao", "leader"))
    assert emailed.status_code == 200 and [v["channel"] for v in emailed.json()] == ["email"]
    # Not known registered yet: its channel is not known either.
    waiting = await http.get("/v1/notifications", params={"matter_id": str(unseen)}, headers=AUTH)
    assert [v["channel"] for v in waiting.json()] == [None]

    # Only the console names a person; the failed list and a retry stay the operators'.
    forged = AUTH | {"X-Staff-User": "li", "X-Staff-Role": "clerk", "X-Staff-Office": "online"}
    assert (await http.get("/v1/notifications", params={"matter_id": str(by_sms)}, headers=forged)).status_code == 403
    assert (await http.get("/v1/notifications", params={"matter_id": str(by_sms)})).status_code == 401
    nameless = {"Authorization": f"Bearer {CONSOLE}"}
    assert (await http.get("/v1/notifications", params={"matter_id": str(by_sms)}, headers=nameless)).status_code == 422
    assert (await http.get("/v1/notifications/failed", headers=_staff("li", "head", "online"))).status_code == 401
    held_id = shown["receipt", "petitioner"]["id"]
    retry = await http.post(
        f"/v1/notifications/{held_id}/retry", headers=_staff("li", "head", "online") | {"X-Operator": "li"}
    )
    assert retry.status_code == 401

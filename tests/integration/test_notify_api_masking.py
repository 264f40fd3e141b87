"""Notify's operator API against a real PostgreSQL: no address or phone in clear in any answer, even where a
server's or gateway's refusal quoted one, or an operator's name is an address."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from xinfang_notify import store
from xinfang_notify.api import build_router
from xinfang_notify.app import MIGRATIONS
from xinfang_notify.registry import Notice, RecipientKind
from xinfang_notify.rules import Planned
from xinfang_notify.settings import NotifySettings
from xinfang_shared.db import create_pool, migrate_dsn
from xinfang_shared.service import Service

pytestmark = pytest.mark.integration
OPERATOR = "operator-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {OPERATOR}"}
EMAIL, PHONE = "zhang.san@example.org", "13812345678"
IN_CLEAR = (EMAIL, "zhang.san", PHONE, "138 1234 5678", "1234 5678")


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    schema = f"notify_api_{uuid.uuid4().hex[:8]}"
    await migrate_dsn(database, schema, MIGRATIONS)
    p = await create_pool(database, schema)
    yield p
    await p.close()


@pytest.fixture
async def http(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """Notify's routes as the service serves them (its operator key, its error handlers), on this pool."""
    settings = NotifySettings(_env_file=None, operator_api_key=SecretStr(OPERATOR))  # type: ignore[call-arg]
    service = Service(settings, migrations=MIGRATIONS, title="notify")
    service.api.include_router(build_router(service, lambda: pool, "gateway-token"))
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

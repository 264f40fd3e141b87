"""Notify's bookkeeping against a real PostgreSQL: a sender's batch marked sent in one statement, fenced by each
claim's attempt, and a delivery receipt that overtakes its batch's mark."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from xinfang_notify import store
from xinfang_notify.app import MIGRATIONS
from xinfang_notify.registry import Notice, RecipientKind
from xinfang_notify.rules import Planned
from xinfang_shared.contracts.events import utc_now
from xinfang_shared.db import create_pool, migrate_dsn

pytestmark = pytest.mark.integration
LEASE = timedelta(seconds=60)


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    schema = f"notify_store_{uuid.uuid4().hex[:8]}"
    await migrate_dsn(database, schema, MIGRATIONS)
    p = await create_pool(database, schema)
    yield p
    await p.close()


async def _claimed(pool: asyncpg.Pool, n: int) -> list[store.Claimed]:
    planned = [Planned(uuid.uuid4(), Notice.RECEIPT, RecipientKind.PETITIONER, "", False, "", {}) for _ in range(n)]
    async with pool.acquire() as conn:
        assert await store.plan(conn, planned) == n
    return await store.claim(pool, n, LEASE)


async def _status(pool: asyncpg.Pool, n: store.Claimed) -> str:
    status: str = await pool.fetchval("SELECT status FROM notifications WHERE id = $1", n.id)
    return status


async def test_a_batch_is_marked_sent_at_once_and_a_lapsed_claim_is_not(pool: asyncpg.Pool) -> None:
    a, b, c = await _claimed(pool, 3)
    # c's claim lapsed and another sender claimed it again (its attempt moved on): this sender's mark must not land.
    await pool.execute("UPDATE notifications SET attempts = attempts + 1 WHERE id = $1", c.id)
    # Each is sent when the server took it, not when the batch is marked (seconds later, for a long batch).
    taken = {n.id: datetime(2026, 12, 2, 8, 0, i, tzinfo=UTC) for i, n in enumerate((a, b, c))}
    accepted = [store.Accepted(n, "email", "z***@example.org", f"250 ok {n.id}", taken[n.id]) for n in (a, b, c)]
    assert await store.sent_many(pool, accepted) == 2
    assert [await _status(pool, n) for n in (a, b, c)] == ["sent", "sent", "pending"]
    row = await pool.fetchrow(
        "SELECT channel, address_masked, provider_id, lease_until, sent_at FROM notifications WHERE id = $1", a.id
    )
    assert row is not None and tuple(row) == ("email", "z***@example.org", f"250 ok {a.id}", None, taken[a.id])
    assert await pool.fetchval("SELECT sent_at FROM notifications WHERE id = $1", b.id) == taken[b.id]


async def test_a_receipt_before_the_sent_mark_is_kept_by_it(pool: asyncpg.Pool) -> None:
    early, late_one, unclaimed = await _claimed(pool, 3)
    await pool.execute("UPDATE notifications SET lease_until = NULL WHERE id = $1", unclaimed.id)
    got = [(early.key, True, ""), (late_one.key, False, "UNDELIVERED phone off"), (unclaimed.key, True, "")]
    # Only claimed (or sent) notices take a receipt: one nobody holds was never sent.
    assert await store.receipts(pool, got) == 2
    accepted = [store.Accepted(n, "sms", "138****5678", "biz", utc_now()) for n in (early, late_one)]
    assert await store.sent_many(pool, accepted) == 2
    assert await _status(pool, early) == "delivered"
    assert await _status(pool, late_one) == "undelivered"
    assert await _status(pool, unclaimed) == "pending"
    error = await pool.fetchval("SELECT last_error FROM notifications WHERE id = $1", late_one.id)
    assert error == "UNDELIVERED phone off"

"""Notify's bookkeeping against a real PostgreSQL: a sender's batch marked sent in one statement, fenced by each
claim's attempt, a delivery receipt that overtakes its batch's mark, and a consumer's batch that plans nothing
committing nothing (one that plans, once, whatever redelivers it)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.integration.conftest import committed, schema_pool
from tests.integration.processes import private_database
from xinfang_notify import store
from xinfang_notify.app import MIGRATIONS, State, handle
from xinfang_notify.registry import Notice, RecipientKind, load_notices
from xinfang_notify.rules import Planned, Rules
from xinfang_notify.settings import NotifySettings
from xinfang_shared.contracts.events import DeadlineEvent, utc_now
from xinfang_shared.db import create_pool, migrate_dsn
from xinfang_shared.deadlines import DeadlineRules

pytestmark = pytest.mark.integration
LEASE = timedelta(seconds=60)


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    async with schema_pool(database, "notify_store", MIGRATIONS) as p:
        yield p


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


async def test_a_batch_that_plans_nothing_commits_nothing_and_a_redelivered_one_adds_nothing(
    stack: dict[str, str],
) -> None:
    # A database of its own (not the tests' shared one, where another test's service may still be winding down),
    # so that these pools' are the only sessions counted.
    async with private_database(stack["DATABASE_URL"]) as database:
        await _batches_commit_only_what_they_plan(database, stack["DATABASE_URL"])


async def _batches_commit_only_what_they_plan(database: str, admin_dsn: str) -> None:
    schema = f"notify_batches_{uuid.uuid4().hex[:8]}"
    await migrate_dsn(database, schema, MIGRATIONS)
    name = database.rsplit("/", 1)[1]
    settings = NotifySettings(_env_file=None, environment="test")  # type: ignore[call-arg]
    rules = Rules(load_notices(settings.notices_file), DeadlineRules.default())
    at = utc_now()

    def deadline(state: str, **fields: object) -> DeadlineEvent:
        fields.setdefault("deadline", "acceptance")
        return DeadlineEvent(
            matter_id=uuid.uuid4(), state=state, due_at=at + timedelta(days=15), at=at, unit="city-5101", **fields
        )

    def plan(_: State, events: list[DeadlineEvent]) -> list[Planned]:
        return [p for e in events for p in rules.deadline(e)]

    async def batches(events: list[list[DeadlineEvent]]) -> tuple[list[int], int]:
        """Each batch handled on a pool of its own; what each returned, and the transactions committed."""
        before = await committed(admin_dsn, name)
        pool = await create_pool(database, schema, min_size=1, max_size=1)
        try:
            state = State(pool, rules, None, None)  # type: ignore[arg-type]
            new = [await handle(state, batch, plan) for batch in events]
        finally:
            await pool.close()
        return new, await committed(admin_dsn, name) - before

    nothing = [[deadline("set"), deadline("met", on_time=True), deadline("closed", window=True)] for _ in range(20)]
    new, idle = await batches(nothing)
    assert new == [0] * 20
    # The pool's start-up only: fewer than one a batch (a transaction per batch, and the pool's reset after it,
    # would be two).
    assert idle < len(nothing), idle
    planning = [[deadline("due-soon")] for _ in range(20)]
    new, busy = await batches(planning)
    assert new == [1] * 20
    assert busy - idle >= 20, (busy, idle)
    # Redelivered, outside any transaction of the consumer's: the unique keys keep each notice once.
    new, _ = await batches(planning)
    assert new == [0] * 20
    count = await _count(database, schema)
    assert count == 20


async def _count(database: str, schema: str) -> int:
    pool = await create_pool(database, schema, max_size=1)
    try:
        n: int = await pool.fetchval("SELECT count(*) FROM notifications")
        return n
    finally:
        await pool.close()

"""How many SQL statements routing registrations costs, counted on the real database (issue 18: a new matter
is placed before it is stored and written once; it was 9 statements per matter, an INSERT then UPDATEs and three
outbox writes; now a batch of matters is written with one statement per table)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from tests import factories
from xinfang_routing.app import MIGRATIONS
from xinfang_routing.categories import CategoryInference
from xinfang_routing.routing import Router
from xinfang_routing.rules import DEFAULT_RULES, RuleBook
from xinfang_shared.contracts.events import MatterRegisteredV2
from xinfang_shared.db import _init_connection, migrate_dsn
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.personal import PersonalDataVault
from xinfang_shared.settings import LOCAL_DEV_SECRET
from xinfang_shared.tracking import new_tracking_code

# A batch of new matters: their rows (already placed), their history rows, and one outbox write for their
# matters.routed.v1, the units' inbox messages and matters.status.v1.
A_BATCH = 3
STATEMENTS = ("execute", "executemany", "fetch", "fetchval", "fetchrow")


class Counting:
    """The connection, counting the statements sent through it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.statements: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in STATEMENTS:
            return attr

        async def counted(query: str, *args: Any, **kwargs: Any) -> Any:
            self.statements.append(query)
            return await attr(query, *args, **kwargs)

        return counted


@pytest.fixture
async def conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    schema = f"routing_statements_{uuid.uuid4().hex[:8]}"  # its own: no other test's relay publishes its outbox
    await migrate_dsn(database, schema, MIGRATIONS)
    connection = await asyncpg.connect(database, server_settings={"search_path": f"{schema},public"})
    await _init_connection(connection)
    try:
        yield connection
    finally:
        await connection.execute(f"DROP SCHEMA {schema} CASCADE")
        await connection.close()


def _router() -> Router:
    return Router(
        RuleBook(DEFAULT_RULES),
        CategoryInference(),
        PersonalDataVault(seal_key=LOCAL_DEV_SECRET),
        DeadlineRules.default(),
    )


def _registration(**overrides: Any) -> MatterRegisteredV2:
    extra = {k: overrides.pop(k) for k in ("duplicate_of",) if k in overrides}
    body = factories.submission(random.Random(18), **overrides)
    event: MatterRegisteredV2 = factories.registration(body, tracking_code=new_tracking_code(), **extra)
    return event


async def _route(conn: asyncpg.Connection, router: Router, *events: MatterRegisteredV2) -> list[str]:
    counting = Counting(conn)
    async with conn.transaction():
        await router.route_registered(counting, events, datetime.now(UTC))  # type: ignore[arg-type]
    return counting.statements


async def _topics(conn: asyncpg.Connection, matter: uuid.UUID) -> list[str]:
    rows = await conn.fetch("SELECT topic FROM outbox WHERE key = $1 ORDER BY id", str(matter).encode())
    return [r["topic"] for r in rows]


async def test_a_batch_of_new_matters_is_routed_in_three_statements(conn: asyncpg.Connection) -> None:
    router = _router()
    events = [_registration() for _ in range(5)]
    assert len(await _route(conn, router, *events)) <= A_BATCH
    for event in events:
        row = await conn.fetchrow("SELECT status, unit FROM matters WHERE matter_id = $1", event.matter_id)
        assert row["status"] == "transferred" and row["unit"]
        # Each matter's events in its order: routed, the unit told, then the status change.
        assert await _topics(conn, event.matter_id) == [
            "matters.routed.v1",
            f"units.{row['unit']}.inbox.v1",
            "matters.status.v1",
        ]
        assert await conn.fetchval("SELECT count(*) FROM history WHERE matter_id = $1", event.matter_id) == 1

    # The same matters under other event ids (one twice in the batch), and a new one: only the new one written.
    again = [
        factories.registration(factories.submission(random.Random(18)), matter_id=m, tracking_code=new_tracking_code())
        for m in (events[0].matter_id, events[1].matter_id, events[0].matter_id)
    ]
    new = _registration()
    assert len(await _route(conn, router, *again, new)) <= A_BATCH
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 6 * 3
    assert await conn.fetchval("SELECT count(*) FROM history") == 6


async def test_a_repeat_is_recorded_in_three_statements(conn: asyncpg.Connection) -> None:
    event = _registration(duplicate_of=uuid.uuid4())
    statements = await _route(conn, _router(), event)
    assert len(statements) <= A_BATCH
    assert await _topics(conn, event.matter_id) == ["matters.status.v1"]
    assert await conn.fetchval("SELECT status FROM matters WHERE matter_id = $1", event.matter_id) == "duplicate"

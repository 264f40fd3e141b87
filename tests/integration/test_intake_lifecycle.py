"""What intake keeps of a matter's deadlines (lifecycle.apply_deadline), on the real database: a batch is one
statement, and it keeps what applying its events one at a time in order would keep."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.factories import deadline_event
from xinfang_intake.app import MIGRATIONS
from xinfang_intake.lifecycle import apply_deadline
from xinfang_shared.contracts.reference import DeadlineState
from xinfang_shared.db import _init_connection, migrate_dsn

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.fixture
async def conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    schema = f"intake_lifecycle_{uuid.uuid4().hex[:8]}"
    await migrate_dsn(database, schema, MIGRATIONS)
    connection = await asyncpg.connect(database, server_settings={"search_path": f"{schema},public"})
    await _init_connection(connection)
    try:
        yield connection
    finally:
        await connection.execute(f"DROP SCHEMA {schema} CASCADE")
        await connection.close()


async def _matter(conn: asyncpg.Connection) -> uuid.UUID:
    matter = uuid.uuid4()
    await conn.execute(
        "INSERT INTO matters (matter_id, tracking_code, channel, external_id, content_hash, kind, petitioner_key,"
        " personal_data, details, fingerprint, submitted_at, registered_at, status, status_at)"
        " VALUES ($1, $2, 'letter', $2, '', 'complaint', '', '', '{}', '{}', $3, $3, 'registered', $3)",
        matter,
        matter.hex,
        T0,
    )
    return matter


async def _kept(conn: asyncpg.Connection) -> dict[tuple[uuid.UUID, str], tuple[str, datetime]]:
    rows = await conn.fetch("SELECT matter_id, deadline, state, at FROM matter_deadlines")
    return {(r["matter_id"], r["deadline"]): (r["state"], r["at"]) for r in rows}


async def test_a_batch_keeps_each_deadlines_latest_state_and_a_late_event_changes_nothing(
    conn: asyncpg.Connection,
) -> None:
    one, two = await _matter(conn), await _matter(conn)
    unknown = uuid.uuid4()  # not registered here (another intake's, or not yet): not kept
    at = [T0 + timedelta(minutes=m) for m in range(4)]
    batch = [
        deadline_event(DeadlineState.SET, "acceptance", matter_id=one, at=at[0]),
        deadline_event(DeadlineState.DUE_SOON, "acceptance", matter_id=one, at=at[2]),
        deadline_event(DeadlineState.OVERDUE, "acceptance", matter_id=one, at=at[1]),  # older: loses
        deadline_event(DeadlineState.SET, "handling", matter_id=one, at=at[1]),
        deadline_event(DeadlineState.SET, "acceptance", matter_id=two, at=at[0]),
        deadline_event(DeadlineState.MET, "acceptance", matter_id=two, at=at[0]),  # same time, later: wins
        deadline_event(DeadlineState.SET, "acceptance", matter_id=unknown, at=at[0]),
    ]
    await apply_deadline(conn, batch)
    assert await _kept(conn) == {
        (one, "acceptance"): ("due-soon", at[2]),
        (one, "handling"): ("set", at[1]),
        (two, "acceptance"): ("met", at[0]),
    }
    # Redelivered or late: nothing goes back.
    await apply_deadline(conn, [deadline_event(DeadlineState.SET, "acceptance", matter_id=one, at=at[0])])
    await apply_deadline(conn, batch[:1])
    assert (await _kept(conn))[(one, "acceptance")] == ("due-soon", at[2])
    await apply_deadline(conn, [deadline_event(DeadlineState.MET, "acceptance", matter_id=one, at=at[3])])
    assert (await _kept(conn))[(one, "acceptance")] == ("met", at[3])
    await apply_deadline(conn, [])

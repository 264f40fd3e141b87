"""Two supervision instances share the scheduler; one is killed with -9 while the deadlines it was moving
go overdue: every deadline still gets exactly one overdue (and one supervision order), none is missed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaProducer

from tests.integration.conftest import eventually
from tests.integration.kafka_tools import Tail, consumed_by, outbox_published, pool_for, read_to_end, start_group_at_end
from tests.integration.processes import ServiceProcess, free_port
from xinfang_shared.contracts.events import MatterStatus, MatterStatusChanged
from xinfang_shared.contracts.topics import (
    DEADLINES_EVENTS,
    MATTERS_STATUS,
    unit_inbox_topic,
)
from xinfang_shared.db import migrate_dsn
from xinfang_supervision.app import MIGRATIONS

UNIT = "city-5107"
MATTERS = 3000
OPERATOR = "kill9-operator-" + uuid.uuid4().hex


async def _fetchval(dsn: str, sql: str, ids: list[uuid.UUID]) -> Any:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "supervision"})
    try:
        return await conn.fetchval(sql, ids)
    finally:
        await conn.close()


async def _count(dsn: str, sql: str, ids: list[uuid.UUID]) -> int:
    return int(await _fetchval(dsn, sql, ids))


async def test_two_instances_and_a_kill_9_give_exactly_one_overdue_per_deadline(
    database: str, bootstrap: str, tmp_path: Path
) -> None:
    await migrate_dsn(database, "supervision", MIGRATIONS)
    group = f"test-supervision-kill9-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(bootstrap, group, consumed_by("supervision"))
    base = os.environ | {
        "DATABASE_URL": database,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": group,
        "LOG_LEVEL": "WARNING",
        "OUTBOX_POLL_INTERVAL_S": "0.2",
        "SUPERVISION_CLOCK": "controlled",
        "OPERATOR_API_KEY": OPERATOR,
        "SCHEDULER_INTERVAL_S": "0.2",
        # Small batches: many transactions, so the kill lands among them (and the two instances interleave).
        "SCHEDULER_BATCH_SIZE": "50",
    }
    a = ServiceProcess(base | {"HTTP_PORT": str(free_port())}, tmp_path / "a.log", service="supervision")
    b = ServiceProcess(base | {"HTTP_PORT": str(free_port())}, tmp_path / "b.log", service="supervision")
    tail = Tail(bootstrap, [DEADLINES_EVENTS.name, unit_inbox_topic(UNIT)])
    await tail.start()
    await asyncio.gather(a.start(), b.start())
    ids = [uuid.uuid4() for _ in range(MATTERS)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        # Transferred to the unit, as routing publishes it: the acceptance deadline (15 days) starts.
        for matter in ids:
            event = MatterStatusChanged(
                matter_id=matter,
                status=MatterStatus.TRANSFERRED,
                previous_status=MatterStatus.REGISTERED,
                unit=UNIT,
                at=datetime.now(UTC),
                action="routed",
            )
            await producer.send(MATTERS_STATUS.name, event.model_dump_json().encode(), key=str(matter).encode())
        await producer.flush()
    finally:
        await producer.stop()
    open_sql = "SELECT count(*) FROM deadlines WHERE deadline = 'acceptance' AND open AND matter_id = ANY($1)"

    async def all_set() -> bool:
        return await _count(database, open_sql, ids) == MATTERS

    await eventually(all_set, timeout=120)

    overdue_sql = "SELECT count(*) FROM deadlines WHERE deadline = 'acceptance' AND overdue_at IS NOT NULL"
    overdue_sql += " AND matter_id = ANY($1)"
    async with httpx.AsyncClient(timeout=120, headers={"Authorization": f"Bearer {OPERATOR}"}) as client:
        # A moves the clock past every due time (15 days, to the end of the last day, past a holiday if it falls
        # on one) but not to an escalation, and starts the checks; B's scheduler joins in; A dies mid-way.
        last_due = await _fetchval(database, "SELECT max(due_at) FROM deadlines WHERE matter_id = ANY($1)", ids)
        now = datetime.fromisoformat((await client.get(f"http://127.0.0.1:{a.port}/v1/admin/clock")).json()["now"])
        seconds = int((last_due - now).total_seconds()) + 3600
        # The test holds a third of the deadlines locked (the checks skip locked rows), so however fast the
        # instances are, the kill lands before they are all overdue: the held ones go overdue only after it.
        holder = await asyncpg.connect(database, server_settings={"search_path": "supervision"})
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT 1 FROM deadlines WHERE matter_id = ANY($1) FOR UPDATE", ids[-MATTERS // 3 :])
        advancing = asyncio.create_task(
            client.post(f"http://127.0.0.1:{a.port}/v1/admin/clock/advance", json={"seconds": seconds})
        )

        async def some_overdue() -> bool:
            return await _count(database, overdue_sql, ids) >= 200

        try:
            await eventually(some_overdue, timeout=120)
            a.kill9()
            at_kill = await _count(database, overdue_sql, ids)
        finally:
            await held.rollback()
            await holder.close()
        with contextlib.suppress(httpx.TransportError):  # it was killed answering
            await advancing
        assert at_kill < MATTERS, "the kill came too late to test"
        await a.start()  # and back: it may not redo what it had committed, nor miss what it had not
        settled = await client.post(f"http://127.0.0.1:{b.port}/v1/admin/clock/advance", json={"seconds": 0})
        assert settled.status_code == 200, settled.text
    try:
        assert await _count(database, overdue_sql, ids) == MATTERS
        ours = {str(m) for m in ids}

        def events(state: str) -> list[dict[str, object]]:
            found = [orjson.loads(r.value) for r in tail.on(DEADLINES_EVENTS.name) if r.key.decode() in ours]
            return [e for e in found if e["deadline"] == "acceptance" and e["state"] == state]

        await eventually(lambda: len({e["matter_id"] for e in events("overdue")}) == MATTERS, timeout=120)
        # Everything stored to publish is published, and read: a second event would be here now.
        outbox = await pool_for(database, "supervision")
        try:
            await outbox_published(outbox)
        finally:
            await outbox.close()
        await read_to_end(tail, tail.on(DEADLINES_EVENTS.name))
        for state in ("due-soon", "overdue"):
            seen = events(state)
            distinct = {e["event_id"]: e for e in seen}
            per_matter = Counter(str(e["matter_id"]) for e in distinct.values())
            assert set(per_matter.values()) == {1} and len(per_matter) == MATTERS, f"one {state} per deadline"
            print(f"{state}: {len(seen) - len(distinct)} events seen twice on the wire (same event id)")
        orders = [orjson.loads(r.value) for r in tail.on(unit_inbox_topic(UNIT)) if r.key.decode() in ours]
        distinct_orders = {o["event_id"]: o for o in orders if o["type"] == "supervision-order"}
        assert Counter(o["matter_id"] for o in distinct_orders.values()) == Counter({m: 1 for m in ours})
        print(f"supervision kill -9 after {at_kill} of {MATTERS} deadlines went overdue")
    finally:
        a.stop()
        b.stop()
        await tail.stop()

"""Routing killed with -9 mid-batch: nothing lost, nothing routed twice."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import Tail, consumed_by, outbox_published, pool_for, read_to_end, start_group_at_end
from tests.integration.processes import ServiceProcess, free_port
from xinfang_routing.app import MIGRATIONS
from xinfang_shared.contracts.events import MatterRouted
from xinfang_shared.contracts.topics import MATTERS_REGISTERED_V2, MATTERS_ROUTED
from xinfang_shared.db import migrate_dsn
from xinfang_shared.tracking import new_tracking_code


async def _routed_in_db(dsn: str, ids: list[uuid.UUID]) -> int:
    """How many of these matters routing has routed (other tests share the database)."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "routing"})
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM matters WHERE office IS NOT NULL AND matter_id = ANY($1)", ids)
        )
    finally:
        await conn.close()


async def test_kill_9_mid_batch_loses_nothing_and_routes_nothing_twice(
    database: str, bootstrap: str, tmp_path: Path
) -> None:
    await migrate_dsn(database, "routing", MIGRATIONS)
    group = f"test-routing-kill9-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(bootstrap, group, consumed_by("routing"))
    env = os.environ | {
        "DATABASE_URL": database,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": group,
        "HTTP_PORT": str(free_port()),
        "LOG_LEVEL": "WARNING",
        "OUTBOX_POLL_INTERVAL_S": "0.2",
    }
    routing = ServiceProcess(env, tmp_path / "routing.log", service="routing")
    tail = Tail(bootstrap, [MATTERS_ROUTED.name])
    await tail.start()
    await routing.start()
    rng = random.Random(4)
    events = []
    for _ in range(2000):
        events.append(factories.registration(factories.submission(rng), tracking_code=new_tracking_code()))
    ids = [e.matter_id for e in events]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sending = asyncio.gather(
            *[
                await producer.send(
                    MATTERS_REGISTERED_V2.name, e.model_dump_json().encode(), key=str(e.matter_id).encode()
                )
                for e in events
            ]
        )

        async def some_routed() -> bool:
            return await _routed_in_db(database, ids) >= 300

        await eventually(some_routed, timeout=120)
        routing.kill9()
        at_kill = await _routed_in_db(database, ids)
        await sending
        # The same events again, as a producer retrying after a timeout would: nothing may change twice.
        for e in events[:200]:
            await producer.send(MATTERS_REGISTERED_V2.name, e.model_dump_json().encode(), key=str(e.matter_id).encode())
        await producer.flush()
    finally:
        await producer.stop()
    assert at_kill < len(events), "the kill came too late to test"
    await routing.start()
    try:

        async def all_routed() -> bool:
            return await _routed_in_db(database, ids) == len(events)

        await eventually(all_routed, timeout=180)
        ours = {str(e.matter_id) for e in events}

        def published() -> bool:
            return {r.key.decode() for r in tail.on(MATTERS_ROUTED.name)} >= ours

        await eventually(published, timeout=120)
        # Everything stored to publish is published, and read: a second event would be here now.
        outbox = await pool_for(database, "routing")
        try:
            await outbox_published(outbox)
        finally:
            await outbox.close()
        await read_to_end(tail, tail.on(MATTERS_ROUTED.name))
        routed = [r for r in tail.on(MATTERS_ROUTED.name) if r.key.decode() in ours]
        distinct = {orjson.loads(r.value)["event_id"]: r for r in routed}
        per_matter = Counter(r.key for r in distinct.values())
        assert set(per_matter.values()) == {1}, "each matter routed once"
        for record in distinct.values():
            MatterRouted.model_validate_json(record.value)
        print(
            f"routing kill -9 after {at_kill} of {len(events)} routed; "
            f"{len(routed) - len(distinct)} routed events seen twice on the wire"
        )
    finally:
        routing.stop()
        await tail.stop()

"""What a service tells its operators, on the real broker and database: the consumer lag of the partitions it
holds (from the group's committed offsets and the partitions' end offsets), the outbox's real backlog and the
age of its oldest row, a gauge read from a query at each scrape, and liveness apart from readiness."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from tests.integration.conftest import TopicFactory, eventually
from xinfang_shared import outbox
from xinfang_shared.db import create_pool, migrate_dsn
from xinfang_shared.kafka_auth import KafkaConnection
from xinfang_shared.outbox import OutboxRelay
from xinfang_shared.service import Service
from xinfang_shared.settings import ServiceSettings

NO_MIGRATIONS = Path("/nonexistent")


def _service(database: str, bootstrap: str) -> Service:
    settings = ServiceSettings(
        service_name=f"signals_{uuid.uuid4().hex[:6]}",
        database_url=database,
        kafka_bootstrap_servers=bootstrap,
        outbox_poll_interval_s=0.5,
        log_format="console",
        _env_file=None,  # type: ignore[call-arg]
    )
    return Service(settings, migrations=NO_MIGRATIONS, title="signals")


async def _get(service: Service, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=service.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path)


def _samples(text: str, name: str) -> dict[str, float]:
    """{labels: value} of one metric in Prometheus text."""
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(\{{[^}}]*\}})? (\S+)", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


async def test_lag_is_what_the_group_has_not_committed_of_the_partitions_this_instance_holds(
    database: str, bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic("lag", partitions=2)
    service = _service(database, bootstrap)
    await migrate_dsn(database, service.settings.db_schema, NO_MIGRATIONS)
    gate = asyncio.Event()
    taken: list[int] = []

    @service.consume(topic, consumer="slow")
    async def slow(records: Any) -> None:
        await gate.wait()  # held: nothing of the poll is committed until the gate opens
        taken.extend(r.offset for r in records)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, b"x", partition=i % 2)
    finally:
        await producer.stop()
    await service.start()
    try:
        group = service.settings.consumer_group

        async def lag() -> dict[str, float]:
            text = (await _get(service, "/metrics")).text
            return {k: v for k, v in _samples(text, "xinfang_consumer_lag").items() if topic in k}

        async def both_partitions_held() -> bool:
            return len(await lag()) == 2

        await eventually(both_partitions_held, timeout=30)
        assert await lag() == {f'{{group="{group}",partition="{p}",topic="{topic}"}}': 5.0 for p in (0, 1)}, (
            "five records on each partition, none committed"
        )
        gate.set()

        async def caught_up() -> bool:
            return set((await lag()).values()) == {0.0}

        await eventually(caught_up, timeout=30)
        assert sorted(taken) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    finally:
        gate.set()
        await service.stop()


async def test_the_outbox_backlog_and_its_oldest_row_are_read_from_the_table(database: str) -> None:
    schema = f"backlog_{uuid.uuid4().hex[:6]}"
    await migrate_dsn(database, schema, NO_MIGRATIONS)
    pool = await create_pool(database, schema)
    metrics = CollectorRegistry()
    # Not running: the rows stay where the statement put them.
    relay = OutboxRelay(pool=pool, dsn=database, schema=schema, kafka=KafkaConnection("127.0.0.1:1"), metrics=metrics)
    try:
        await relay.measure()
        assert metrics.get_sample_value("xinfang_outbox_backlog") == 0
        assert metrics.get_sample_value("xinfang_outbox_oldest_age_seconds") == 0
        async with pool.acquire() as conn:
            await outbox.enqueue_many(conn, [outbox.Outgoing("t", f"k{i}", b"{}") for i in range(3)])
            await conn.execute("UPDATE outbox SET created_at = now() - interval '90 seconds' WHERE key = 'k0'")
        await relay.measure()
        assert metrics.get_sample_value("xinfang_outbox_backlog") == 3
        age = metrics.get_sample_value("xinfang_outbox_oldest_age_seconds")
        assert age is not None and 90 <= age < 120
    finally:
        await pool.close()


async def test_a_gauge_from_a_query_and_liveness_apart_from_readiness(database: str, bootstrap: str) -> None:
    service = _service(database, bootstrap)
    schema = service.settings.db_schema
    await migrate_dsn(database, schema, NO_MIGRATIONS)
    conn = await asyncpg.connect(database, server_settings={"search_path": schema})
    try:
        await conn.execute("CREATE TABLE things (state text)")
        await conn.execute("INSERT INTO things VALUES ('open'), ('open'), ('shut')")
    finally:
        await conn.close()
    service.gauge_by(
        "test_things", "Things by state", "state", "SELECT state, count(*) FROM things GROUP BY state", every=["lost"]
    )
    await service.start()
    try:
        text = (await _get(service, "/metrics")).text
        assert _samples(text, "test_things") == {'{state="open"}': 2.0, '{state="shut"}': 1.0, '{state="lost"}': 0.0}
        assert _samples(text, "process_resident_memory_bytes")[""] > 0
        assert (await _get(service, "/health")).status_code == 200  # readiness shows Kafka as /health last saw it
        live, ready = await _get(service, "/health/live"), await _get(service, "/health/ready")
        assert (live.status_code, live.json()["status"]) == (200, "ok")
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "kafka": "ok"}

        # Kafka away: still ready (every route writes to the database and its outbox), and it says so.
        service._pings = (asyncio.get_running_loop().time(), {"database": "ok", "kafka": "down"})
        kafka_away = await _get(service, "/health/ready")
        assert kafka_away.status_code == 200 and kafka_away.json()["checks"]["kafka"] == "down"
        # The database away (its pool closed under it): not ready, but alive (a restart would not mend it).
        assert service._pool is not None
        await service._pool.close()
        service._pings = None
        unready = await _get(service, "/health/ready")
        assert unready.status_code == 503 and unready.json()["checks"]["database"].startswith("down")
        assert (await _get(service, "/health/live")).status_code == 200
        # A loop that died does not come back by itself: not alive.
        assert service._relay_task is not None
        service._relay_task.cancel()
        await asyncio.wait([service._relay_task], timeout=10)
        dead = await _get(service, "/health/live")
        assert dead.status_code == 503 and dead.json()["dead"] == ["outbox relay"]
    finally:
        await service.stop()

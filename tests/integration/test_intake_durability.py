"""Intake under failure: Kafka down while submissions are answered, and kill -9 of the process mid-stream."""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import Producer
from pydantic import SecretStr

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import (
    Tail,
    outbox_published,
    pool_for,
    read_to_end,
    read_whole_topic,
    start_group_at_end,
)
from tests.integration.private_kafka import PrivateKafka
from tests.integration.processes import IntakeProcess, free_port
from xinfang_intake.app import MIGRATIONS, create_service
from xinfang_intake.settings import IntakeSettings
from xinfang_shared.contracts.events import MatterRegisteredV2
from xinfang_shared.contracts.topics import BY_NAME, CHANNEL_SUBMITTED, MATTERS_REGISTERED_V2
from xinfang_shared.db import migrate_dsn

KEY = "durability-key-" + uuid.uuid4().hex
LETTERS = CHANNEL_SUBMITTED["letter"].name  # type: ignore[index]


async def test_a_202_is_durable_while_kafka_is_down_and_published_when_it_is_back(
    database: str, tmp_path: Path
) -> None:
    kafka = PrivateKafka(tmp_path / "kafka")
    await asyncio.to_thread(kafka.start)
    service = None
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        intake_topics = [t for t in BY_NAME.values() if "intake" in t.consumers or "intake" in t.producers]
        await admin.create_topics([NewTopic(t.name, num_partitions=2, replication_factor=1) for t in intake_topics])
        await admin.close()
        settings = IntakeSettings(
            database_url=database,
            kafka_bootstrap_servers=kafka.bootstrap,
            kafka_group_id="intake-outage-test",
            channel_api_key=SecretStr(KEY),
            outbox_poll_interval_s=0.2,
            _env_file=None,  # type: ignore[call-arg]
        )
        await migrate_dsn(database, settings.db_schema, MIGRATIONS)
        service = create_service(settings)
        await service.start()
        await asyncio.to_thread(kafka.stop)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.api), base_url="http://intake")
        response = await http.post(
            "/v1/submissions", json=factories.submission(), headers={"Authorization": f"Bearer {KEY}"}
        )
        assert response.status_code == 202, response.text
        answer = response.json()
        assert (await http.get(f"/v1/matters/{answer['tracking_code']}")).json()["status"] == "registered"
        health = await http.get("/health")
        assert health.status_code == 503 and health.json()["checks"]["kafka"] == "down"

        await asyncio.to_thread(kafka.start)
        # Published once Kafka is back: the topic holds exactly one event about it. (The schema is the session's:
        # what an earlier module's intake left in this outbox is published here too.)
        await eventually(lambda: _outbox_empty(service), timeout=90)
        records = await read_whole_topic(kafka.bootstrap, MATTERS_REGISTERED_V2.name)
        ours = [r for r in records if orjson.loads(r.value)["matter_id"] == answer["matter_id"]]
        assert len(ours) == 1
        await http.aclose()
    finally:
        if service is not None:
            await service.stop()
        await asyncio.to_thread(kafka.stop)


def _produce_all(bootstrap: str, bodies: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for body in bodies:
        producer.produce(LETTERS, value=json.dumps(body).encode(), key=body["external_id"].encode())
        producer.poll(0)
    assert producer.flush(60) == 0


async def test_kill_9_at_any_moment_loses_nothing_acknowledged_and_doubles_nothing(
    database: str, bootstrap: str, tmp_path: Path
) -> None:
    await migrate_dsn(database, "intake", MIGRATIONS)
    group = f"test-kill9-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(bootstrap, group, [t.name for t in CHANNEL_SUBMITTED.values()])
    env = os.environ | {
        "DATABASE_URL": database,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": group,
        "HTTP_PORT": str(free_port()),
        "CHANNEL_API_KEY": KEY,
        "LOG_LEVEL": "WARNING",
        "OUTBOX_POLL_INTERVAL_S": "0.2",
    }
    intake = IntakeProcess(env, tmp_path / "intake.log")
    tail = Tail(bootstrap, [MATTERS_REGISTERED_V2.name])
    await tail.start()
    await intake.start()
    rng = random.Random(9)
    over_kafka = [factories.submission(rng) for _ in range(3000)]
    over_http = [factories.submission(rng) for _ in range(400)]
    acknowledged: dict[str, str] = {}  # external_id → matter_id answered 202/200
    unanswered: list[dict[str, Any]] = []
    base = f"http://127.0.0.1:{intake.port}"
    headers = {"Authorization": f"Bearer {KEY}"}

    async def post_all(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
        sem = asyncio.Semaphore(16)

        async def one(body: dict[str, Any]) -> None:
            async with sem:
                try:
                    response = await client.post(f"{base}/v1/submissions", json=body, headers=headers)
                except httpx.TransportError:
                    unanswered.append(body)  # the channel system would send it again
                    return
                assert response.status_code in (200, 202), response.text
                acknowledged[body["external_id"]] = response.json()["matter_id"]

        await asyncio.gather(*(one(b) for b in bodies))

    async with httpx.AsyncClient(timeout=30) as client:
        producing = asyncio.create_task(asyncio.to_thread(_produce_all, bootstrap, over_kafka))
        posting = asyncio.create_task(post_all(client, over_http))

        async def some_registered() -> bool:
            return await _count(database) >= 800

        await eventually(some_registered, timeout=120)
        intake.kill9()
        registered_at_kill = await _count(database)
        await producing
        await posting
        acknowledged_before_kill = dict(acknowledged)
        assert unanswered or registered_at_kill < len(over_kafka) + len(over_http), "the kill came too late to test"

        await intake.start()
        unanswered_before = list(unanswered)
        unanswered.clear()
        await post_all(client, unanswered_before)
        assert not unanswered

    try:
        everything = len(over_kafka) + len(over_http)

        async def all_registered() -> bool:
            return await _count(database) >= everything

        await eventually(all_registered, timeout=180)
        rows = await _matters(database)
        external_ids = {b["external_id"] for b in over_kafka + over_http}
        mine = {ext: mid for ext, mid in rows.items() if ext in external_ids}
        assert set(mine) == external_ids, "every submission is registered"
        for ext, matter_id in acknowledged_before_kill.items():
            assert str(mine[ext]) == matter_id, "an acknowledged matter survived the kill unchanged"

        # On the topic: one registered event per matter (redelivery on the wire would repeat the same event).
        ours = set(mine.values())

        async def all_published() -> bool:
            return {uuid.UUID(orjson.loads(r.value)["matter_id"]) for r in tail.on(MATTERS_REGISTERED_V2.name)} >= ours

        await eventually(all_published, timeout=120)
        # Everything stored to publish is published, and read: a second event of a matter would be here now.
        outbox = await pool_for(database, "intake")
        try:
            await outbox_published(outbox)
        finally:
            await outbox.close()
        await read_to_end(tail, tail.on(MATTERS_REGISTERED_V2.name))
        events = [orjson.loads(r.value) for r in tail.on(MATTERS_REGISTERED_V2.name)]
        for record in tail.on(MATTERS_REGISTERED_V2.name):
            MatterRegisteredV2.model_validate_json(record.value)
        events = [e for e in events if uuid.UUID(e["matter_id"]) in ours]
        per_matter = Counter(e["matter_id"] for e in {e["event_id"]: e for e in events}.values())
        assert set(per_matter.values()) == {1}, "exactly one registered event per matter"
        wire_copies = len(events) - len(per_matter)
        print(
            f"kill -9 after {registered_at_kill} of {everything} registered; {len(unanswered_before)} HTTP "
            f"requests unanswered and re-sent; {wire_copies} registered events seen twice on the wire"
        )
    finally:
        intake.stop()
        await tail.stop()


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "intake"})
    try:
        return int(await conn.fetchval("SELECT count(*) FROM matters"))
    finally:
        await conn.close()


async def _matters(dsn: str) -> dict[str, uuid.UUID]:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "intake"})
    try:
        return {
            r["external_id"]: r["matter_id"] for r in await conn.fetch("SELECT external_id, matter_id FROM matters")
        }
    finally:
        await conn.close()


async def _outbox_empty(service: Any) -> bool:
    return bool(await service.pool.fetchval("SELECT count(*) FROM outbox") == 0)

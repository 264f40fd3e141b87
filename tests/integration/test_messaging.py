"""The shared messaging machinery on the real broker and database: trace context across services,
retry then dead-letter without stalling, and the outbox surviving a Kafka outage."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaMessage
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from pydantic import Field

from tests.integration.conftest import TopicFactory, eventually, read_topic
from tests.integration.kafka_tools import read_whole_topic
from tests.integration.private_kafka import PrivateKafka
from xinfang_shared import outbox
from xinfang_shared.contracts.events import Event
from xinfang_shared.db import create_pool, migrate_dsn
from xinfang_shared.kafka_auth import KafkaConnection
from xinfang_shared.messaging import H_ATTEMPTS, H_ERROR, H_SOURCE_OFFSET, H_SOURCE_PARTITION, H_SOURCE_TOPIC
from xinfang_shared.outbox import OutboxRelay
from xinfang_shared.service import Service
from xinfang_shared.settings import ServiceSettings
from xinfang_shared.telemetry import add_span_processor, configure_tracing

NO_MIGRATIONS = Path("/nonexistent")


class Ping(Event):
    matter_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    fail: bool = False


def _settings(name: str, dsn: str, bootstrap: str) -> ServiceSettings:
    return ServiceSettings(
        service_name=name,
        database_url=dsn,
        kafka_bootstrap_servers=bootstrap,
        consumer_max_attempts=3,
        consumer_backoff_initial_s=0.05,
        consumer_backoff_max_s=0.2,
        outbox_poll_interval_s=0.5,
        log_format="console",
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    configure_tracing("integration-tests", record=True)
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
async def services(database: str, bootstrap: str) -> AsyncIterator[tuple[Service, Service]]:
    suffix = uuid.uuid4().hex[:6]
    a = Service(_settings(f"sender_{suffix}", database, bootstrap), migrations=NO_MIGRATIONS, title="a")
    b = Service(_settings(f"receiver_{suffix}", database, bootstrap), migrations=NO_MIGRATIONS, title="b")
    for svc in (a, b):
        await migrate_dsn(database, svc.settings.db_schema, NO_MIGRATIONS)
    yield a, b
    for svc in (a, b):
        await svc.stop()


async def test_an_event_from_one_service_reaches_another_with_its_trace_context(
    services: tuple[Service, Service], new_topic: TopicFactory, spans: InMemorySpanExporter
) -> None:
    sender, receiver = services
    topic = await new_topic("trace")
    received: list[tuple[dict[str, Any], dict[str, Any], int]] = []

    @receiver.subscriber(topic)
    async def on_ping(body: dict[str, Any], msg: KafkaMessage) -> None:
        received.append((body, msg.headers, trace.get_current_span().get_span_context().trace_id))

    await sender.start()
    await receiver.start()
    ping = Ping()
    with trace.get_tracer("test").start_as_current_span("register a matter") as origin:
        async with sender.pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, topic, ping, key=str(ping.matter_id))
    origin_trace = origin.get_span_context().trace_id

    await eventually(lambda: bool(received), timeout=30)
    body, headers, consumer_trace = received[0]
    assert body["event_id"] == str(ping.event_id)
    assert f"{origin_trace:032x}" in headers["traceparent"]
    assert consumer_trace == origin_trace, "the subscriber's span continues the sender's trace"
    process_spans = [s for s in spans.get_finished_spans() if s.context.trace_id == origin_trace]
    assert any(s.kind == trace.SpanKind.CONSUMER for s in process_spans)


async def test_a_failing_message_goes_to_the_dlq_after_retries_while_the_next_is_processed(
    services: tuple[Service, Service], new_topic: TopicFactory, bootstrap: str
) -> None:
    sender, receiver = services
    topic = await new_topic("dlq", partitions=1)
    attempts: list[str] = []
    processed: list[str] = []

    @receiver.subscriber(topic)
    async def on_ping(event: Ping) -> None:
        if event.fail:
            attempts.append(str(event.event_id))
            raise RuntimeError("downstream refused")
        processed.append(str(event.event_id))

    await sender.start()
    await receiver.start()
    bad, good = Ping(fail=True), Ping()
    async with sender.pool.acquire() as conn, conn.transaction():
        await outbox.enqueue_many(conn, [outbox.Outgoing(topic, "k", bad), outbox.Outgoing(topic, "k", good)])

    await eventually(lambda: processed == [str(good.event_id)], timeout=30)
    assert attempts == [str(bad.event_id)] * 3
    dead = await read_topic(bootstrap, topic + ".dlq", expect=1)
    assert len(dead) == 1
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers[H_SOURCE_TOPIC] == topic
    assert headers[H_SOURCE_PARTITION] == "0"
    assert headers[H_SOURCE_OFFSET] == "0"
    assert headers[H_ATTEMPTS] == "3"
    assert "downstream refused" in headers[H_ERROR]
    assert Ping.model_validate_json(dead[0].value).event_id == bad.event_id


async def test_an_outbox_row_written_while_kafka_is_down_is_published_once_kafka_is_back(
    database: str, tmp_path: Path
) -> None:
    kafka = PrivateKafka(tmp_path / "kafka")
    schema = f"outbox_{uuid.uuid4().hex[:6]}"
    await migrate_dsn(database, schema, NO_MIGRATIONS)
    pool = await create_pool(database, schema)
    metrics = CollectorRegistry()
    relay = OutboxRelay(
        pool=pool,
        dsn=database,
        schema=schema,
        kafka=KafkaConnection(kafka.bootstrap),
        poll_interval_s=0.2,
        metrics=metrics,
    )
    task: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(kafka.start)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic("outage.v1", num_partitions=3, replication_factor=1)])
        await admin.close()
        task = asyncio.create_task(relay.run())

        await asyncio.to_thread(kafka.stop)
        event = Ping()
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, "outage.v1", event, key=str(event.matter_id))
        await eventually(
            lambda: (metrics.get_sample_value("xinfang_outbox_publish_failures_total") or 0) >= 2, timeout=60
        )
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 1, "nothing can be published while down"

        await asyncio.to_thread(kafka.start)
        await eventually(_outbox_empty(pool), timeout=60)
        records = await read_whole_topic(kafka.bootstrap, "outage.v1")
        ids = [Ping.model_validate_json(r.value).event_id for r in records]
        assert ids == [event.event_id], "published exactly once"
    finally:
        relay.stop()
        if task is not None:
            await asyncio.wait_for(task, 30)
        await pool.close()
        await asyncio.to_thread(kafka.stop)


def _outbox_empty(pool: asyncpg.Pool) -> Any:
    async def check() -> bool:
        return await pool.fetchval("SELECT count(*) FROM outbox") == 0

    return check

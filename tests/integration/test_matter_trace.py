"""One trace per matter, on the real broker and database, through the batch consumers of all five services:
the HTTP submission's trace goes with it through intake's coalesced flush and outbox, the relay's send span, and
a process span per record in routing, supervision, notify, stats and intake's own tracking; every span of it has
its parent in it; a redelivered record shows as a dedup span in the same trace; no attribute holds personal
data (spans from the in-memory exporter; the five services in this process)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import SecretStr

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import Tail
from tests.integration.pipeline import UPSTREAM, common_settings, prepare, upstream
from tests.integration.processes import private_database
from xinfang_notify.app import create_service as create_notify
from xinfang_notify.settings import NotifySettings
from xinfang_shared import tracing
from xinfang_shared.contracts.reference import CITIES
from xinfang_shared.contracts.topics import MATTERS_REGISTERED_V2, channel_topic
from xinfang_shared.service import Service
from xinfang_shared.telemetry import add_span_processor
from xinfang_stats.app import create_service as create_stats
from xinfang_stats.settings import StatsSettings

RUN = uuid.uuid4().hex[:8]
CHANNEL_KEY, OPERATOR = f"trace-channel-{RUN}", f"trace-operator-{RUN}"
UNIT_KEYS = {unit: f"trace-{unit}-{RUN}" for unit in CITIES}
SERVICES = (*UPSTREAM, "notify", "stats")


@pytest.fixture(scope="module")
async def cluster(
    stack: dict[str, str], bootstrap: str
) -> AsyncIterator[tuple[dict[str, Service], str, InMemorySpanExporter, Tail]]:
    spans = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(spans))  # tests record spans (tests/conftest.py)
    async with private_database(stack["DATABASE_URL"]) as database:
        common = common_settings(database, bootstrap, OPERATOR)
        groups = await prepare(database, bootstrap, f"test-trace-{RUN}", SERVICES)
        services = upstream(groups, common, channel_key=CHANNEL_KEY, unit_keys=UNIT_KEYS, scheduler_interval_s=0.2)
        # Notices fail to go (nothing listens there) and are retried: this test follows the trace, not the mail.
        services["notify"] = create_notify(
            NotifySettings(
                kafka_group_id=groups["notify"],
                smtp_url="smtp://127.0.0.1:9",
                sms_gateway_url="http://127.0.0.1:9",
                sms_access_key=SecretStr("trace-sms"),
                sms_receipt_token=SecretStr("trace-receipt"),
                **common,
            )
        )
        services["stats"] = create_stats(StatsSettings(kafka_group_id=groups["stats"], **common))
        tail = Tail(bootstrap, [MATTERS_REGISTERED_V2.name])
        await tail.start()
        for service in services.values():
            await service.start()
        try:
            yield services, database, spans, tail
        finally:
            for service in reversed(services.values()):
                await service.stop()
            await tail.stop()


def _group(span: ReadableSpan) -> str | None:
    value = (span.attributes or {}).get("messaging.consumer.group.name")
    return str(value) if value is not None else None


async def test_one_matter_is_one_trace_through_every_service(
    cluster: tuple[dict[str, Service], str, InMemorySpanExporter, Tail],
) -> None:
    services, database, spans, tail = cluster
    body = factories.submission(random.Random(7), channel="online")
    personal = body["petitioner"]
    intake = httpx.AsyncClient(transport=httpx.ASGITransport(app=services["intake"].api), base_url="http://intake")
    async with intake:
        answer = await intake.post("/v1/submissions", json=body, headers={"Authorization": f"Bearer {CHANNEL_KEY}"})
    assert answer.status_code in (201, 202), answer.text
    matter = answer.json()["matter_id"]

    # The request's server span is the root of the matter's trace.
    server = next(
        s
        for s in spans.get_finished_spans()
        if s.kind == SpanKind.SERVER and (s.attributes or {}).get("http.route") == "/v1/submissions"
    )
    trace_id = server.context.trace_id

    def traced() -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]

    groups = {name: services[name].settings.consumer_group for name in SERVICES}

    def every_service_processed() -> bool:
        seen = {_group(s) for s in traced() if s.name.startswith("process ")}
        return set(groups.values()) <= seen

    await eventually(every_service_processed, timeout=90)
    ours = traced()
    assert any(s.name == f"send {MATTERS_REGISTERED_V2.name}" and s.kind == SpanKind.PRODUCER for s in ours)
    processed = {(_group(s), str((s.attributes or {})["messaging.destination.name"])) for s in ours if _group(s)}
    assert (groups["routing"], MATTERS_REGISTERED_V2.name) in processed
    assert {g for g, _ in processed} == set(groups.values()), "the five services, each in the matter's trace"

    # Redelivered (a producer's retry, say): routing, notify and stats skip it, and say so in the same trace.
    record = next(r for r in tail.on(MATTERS_REGISTERED_V2.name) if r.key.decode() == matter)
    producer = AIOKafkaProducer(bootstrap_servers=services["routing"].settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(record.topic, record.value, key=record.key, headers=list(record.headers))
    finally:
        await producer.stop()

    def dedup_in(group: str) -> bool:
        by_id = {s.context.span_id: s for s in traced()}
        return any(
            s.name == "dedup" and s.parent is not None and _group(by_id.get(s.parent.span_id, s)) == group
            for s in traced()
        )

    await eventually(lambda: dedup_in(groups["routing"]), timeout=60)
    conn = await asyncpg.connect(database)
    try:
        routed = await conn.fetchval("SELECT count(*) FROM routing.matters WHERE matter_id = $1", uuid.UUID(matter))
    finally:
        await conn.close()
    assert routed == 1

    await asyncio.sleep(1)  # spans of batches still open end
    ours = traced()
    ids = {s.context.span_id for s in ours}
    orphans = [s.name for s in ours if s.parent is not None and s.parent.span_id not in ids]
    assert orphans == [], "every span's parent is in the trace"
    roots = [s for s in ours if s.parent is None]
    assert roots == [server]

    # Nothing of the petitioner's in any span of the matter: names, attributes, events.
    secrets = [str(v) for v in personal.values() if isinstance(v, str) and len(v) >= 2] + [body["content"][:20]]
    every = [s.name for s in ours]
    for s in ours:
        every += [f"{k}={v}" for k, v in (s.attributes or {}).items()]
        every += [f"{e.name} {dict(e.attributes or {})}" for e in s.events]
    text = orjson.dumps(every).decode()
    leaked = [secret for secret in secrets if secret in text]
    assert leaked == [], "personal data in a span"


async def test_a_channel_system_s_trace_goes_on_through_intake_s_kafka_path(
    cluster: tuple[dict[str, Service], str, InMemorySpanExporter, Tail],
) -> None:
    """A submission a channel system published under its own span: intake's process span is its child, and the
    matter's later spans stay in that trace; intake notes each record once (no dedup span for a record seen once)."""
    services, _, spans, _ = cluster
    body = factories.submission(random.Random(8), channel="online")
    tracer = trace.get_tracer("a channel system")
    with tracer.start_as_current_span("publish a submission") as sent:
        carrier = tracing.current_carrier()
    producer = AIOKafkaProducer(bootstrap_servers=services["intake"].settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            channel_topic("online"),
            orjson.dumps(body),
            key=body["external_id"].encode(),
            headers=[(k, v.encode()) for k, v in carrier.items()],
        )
    finally:
        await producer.stop()
    trace_id = sent.get_span_context().trace_id
    groups = {name: services[name].settings.consumer_group for name in SERVICES}

    def traced() -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]

    def routed() -> bool:
        return any(_group(s) == groups["routing"] for s in traced())

    await eventually(routed, timeout=90)
    intake = next(s for s in traced() if _group(s) == groups["intake"] and s.name.startswith("process intake."))
    assert intake.parent is not None and intake.parent.span_id == sent.get_span_context().span_id
    assert not [s for s in traced() if s.name == "dedup"], "nothing was redelivered"

"""TOPIC_PREFIX, a namespace on the broker: intake run with a prefix reads its channel topics in the namespace,
publishes there (the outbox relay prefixes every row's topic), names its default consumer group in it, and leaves
the contract's own topics untouched, on the real broker and database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr, ValidationError

from tests import factories
from tests.integration.kafka_tools import Tail
from tests.integration.pipeline import common_settings
from xinfang_intake.app import MIGRATIONS, create_asgi
from xinfang_intake.settings import IntakeSettings
from xinfang_shared.contracts.reference import Channel
from xinfang_shared.contracts.topics import CHANNEL_SUBMITTED, MATTERS_REGISTERED_V2, topics_to_create
from xinfang_shared.db import migrate_dsn
from xinfang_shared.kafka_admin import delete_topics, ensure_topics
from xinfang_shared.service import Service

PREFIX = f"ns-{uuid.uuid4().hex[:6]}."
KEY = "namespace-channel-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
async def intake(database: str, bootstrap: str) -> AsyncIterator[Service]:
    namespace = {PREFIX + name: partitions for name, partitions in topics_to_create().items()}
    await ensure_topics(bootstrap, namespace)
    await migrate_dsn(database, "intake", MIGRATIONS)
    settings = IntakeSettings(
        topic_prefix=PREFIX, channel_api_key=SecretStr(KEY), **common_settings(database, bootstrap, "op")
    )
    service, _ = create_asgi(settings, fast_path=False)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        await delete_topics(bootstrap, list(namespace))


async def _ends(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def test_a_namespaced_intake_reads_and_writes_only_its_namespace(intake: Service, bootstrap: str) -> None:
    assert intake.settings.consumer_group == f"{PREFIX}xinfang-intake"
    contract_before = await _ends(bootstrap, MATTERS_REGISTERED_V2.name)
    tail = Tail(bootstrap, [PREFIX + MATTERS_REGISTERED_V2.name])
    await tail.start()
    try:
        # One on the namespace's letter topic, one over HTTP.
        by_kafka = factories.submission(channel="letter")
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                PREFIX + CHANNEL_SUBMITTED[Channel.LETTER].name,
                orjson.dumps(by_kafka),
                key=by_kafka["external_id"].encode(),
            )
        finally:
            await producer.stop()
        by_http = factories.submission(channel="online")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=intake.api), base_url="http://intake") as c:
            response = await c.post("/v1/submissions", json=by_http, headers={"Authorization": f"Bearer {KEY}"})
        assert response.status_code == 202, response.text

        records = await tail.wait(PREFIX + MATTERS_REGISTERED_V2.name, lambda r: True, count=2, timeout=60)
        assert {orjson.loads(r.value)["external_id"] for r in records} == {
            by_kafka["external_id"],
            by_http["external_id"],
        }
    finally:
        await tail.stop()
    assert await _ends(bootstrap, MATTERS_REGISTERED_V2.name) == contract_before, "a contract topic was written"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        groups = {g[0] for g in await admin.list_consumer_groups()}
    finally:
        await admin.close()
    assert f"{PREFIX}xinfang-intake" in groups


def test_a_prefix_is_a_topic_name_part_and_an_explicit_group_is_kept() -> None:
    settings = IntakeSettings(topic_prefix="bench-1a2b.", kafka_group_id="mine", _env_file=None)  # type: ignore[call-arg]
    assert settings.topic(MATTERS_REGISTERED_V2.name) == "bench-1a2b.matters.registered.v2"
    assert settings.consumer_group == "mine"
    assert IntakeSettings(_env_file=None).topic("x.v1") == "x.v1"  # type: ignore[call-arg]
    for bad in ("Bench.", "bench", "a b.", "../"):
        with pytest.raises(ValidationError):
            IntakeSettings(topic_prefix=bad, _env_file=None)  # type: ignore[call-arg]

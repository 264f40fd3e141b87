"""Who may do what on the broker, tried as each kind of principal on the tests' SCRAM listener, with the ACLs the
topic registry generates (xinfang_shared.contracts.acls, the same as `make up` applies): a unit writes only its own
feedback topic and reads only its own inbox and refusals; a channel system writes only its channel; a service
writes only what it produces; nobody but operators reads a dead-letter topic; a wrong password gets nowhere."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from tests.integration.conftest import Secured
from xinfang_shared.contracts.topics import (
    FEEDBACK_REJECTED,
    MATTERS_REGISTERED,
    MATTERS_REGISTERED_V2,
    MATTERS_ROUTED,
    MATTERS_STATUS,
    SUBMISSION_REJECTED,
    UNITS_FEEDBACK,
    channel_rejected_topic,
    channel_topic,
    unit_feedback_rejected_topic,
    unit_feedback_topic,
    unit_inbox_topic,
)
from xinfang_shared.kafka_auth import KafkaConnection

UNIT, OTHER = "city-5101", "city-5103"


async def _write(kafka: KafkaConnection, topic: str) -> None:
    """One record to `topic`, acknowledged, or the broker's refusal raised."""
    producer = AIOKafkaProducer(**kafka.aiokafka(), acks="all", request_timeout_ms=15_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"probe": true}', key=str(uuid.uuid4()).encode())
    finally:
        await producer.stop()


async def _read(kafka: KafkaConnection, topic: str, group: str) -> None:
    """Joins `group` on `topic` and fetches once, or raises the broker's refusal."""
    consumer = AIOKafkaConsumer(
        topic, **kafka.aiokafka(), group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=2_000)
        await consumer.commit()  # the group's offsets: what a consumer of its own would do
    finally:
        await consumer.stop()


async def _refused_write(kafka: KafkaConnection, topic: str) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await _write(kafka, topic)


async def _refused_read(kafka: KafkaConnection, topic: str, group: str) -> None:
    with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
        await _read(kafka, topic, group)


async def test_a_unit_writes_its_own_feedback_and_nothing_in_another_units_name(secured: Secured) -> None:
    unit = secured.principal(f"unit-{UNIT}")
    await _write(unit, unit_feedback_topic(UNIT))
    await _refused_write(unit, unit_feedback_topic(OTHER))  # acting for another unit
    await _refused_write(unit, UNITS_FEEDBACK.name)  # the shared topic, where the body names the unit: operators'
    await _refused_write(unit, unit_inbox_topic(OTHER))  # forging another unit's inbox
    await _refused_write(unit, MATTERS_STATUS.name)
    await _refused_write(unit, unit_feedback_rejected_topic(UNIT))


async def test_a_unit_reads_its_own_inbox_and_refusals_only(secured: Secured) -> None:
    unit = secured.principal(f"unit-{UNIT}")
    group = f"{UNIT}-system-{uuid.uuid4().hex[:6]}"
    await _read(unit, unit_inbox_topic(UNIT), group)
    await _read(unit, unit_feedback_rejected_topic(UNIT), group)
    for topic in (
        unit_inbox_topic(OTHER),  # another unit's matters, with their petitioners
        unit_feedback_rejected_topic(OTHER),  # another unit's refusals (they name its matters)
        FEEDBACK_REJECTED.name,
        MATTERS_REGISTERED_V2.name,
        MATTERS_REGISTERED.name,
        MATTERS_STATUS.name,
        unit_inbox_topic(UNIT) + ".dlq",
        unit_feedback_topic(UNIT) + ".dlq",
    ):
        await _refused_read(unit, topic, group)
    # Its own inbox, but in a consumer group that is not its own (another unit's, a service's): refused.
    await _refused_read(unit, unit_inbox_topic(UNIT), f"{OTHER}-system")
    await _refused_read(unit, unit_inbox_topic(UNIT), "xinfang-routing")


async def test_a_channel_system_writes_its_channel_and_reads_its_own_refusals(secured: Secured) -> None:
    letters = secured.principal("channel-letter")
    await _write(letters, channel_topic("letter"))
    await _refused_write(letters, channel_topic("online"))
    await _read(letters, channel_rejected_topic("letter"), f"channel-letter-{uuid.uuid4().hex[:6]}")
    for topic in (channel_rejected_topic("online"), SUBMISSION_REJECTED.name, MATTERS_REGISTERED_V2.name):
        await _refused_read(letters, topic, "channel-letter-probe")


async def test_a_service_writes_only_what_it_produces(secured: Secured) -> None:
    stats = secured.principal("service-stats")
    await _refused_write(stats, MATTERS_STATUS.name)  # routing's
    await _refused_write(stats, unit_inbox_topic(UNIT))
    await _refused_write(stats, MATTERS_REGISTERED_V2.name)
    await _read(stats, MATTERS_ROUTED.name, f"xinfang-stats-{uuid.uuid4().hex[:6]}")
    await _refused_read(stats, unit_inbox_topic(UNIT), "xinfang-stats")
    supervision = secured.principal("service-supervision")
    await _refused_write(supervision, MATTERS_REGISTERED_V2.name)  # intake's
    # Nobody writes the retired v1 any more, intake included.
    await _refused_write(secured.principal("service-intake"), MATTERS_REGISTERED.name)


async def test_only_the_consumers_of_a_topic_write_its_dead_letters_and_nobody_reads_them(secured: Secured) -> None:
    routing = secured.principal("service-routing")
    await _write(routing, MATTERS_REGISTERED_V2.name + ".dlq")  # routing reads v2: its poison goes there
    await _refused_write(routing, channel_topic("letter") + ".dlq")  # intake's
    await _refused_write(secured.principal("service-intake"), MATTERS_REGISTERED_V2.name + ".dlq")  # it reads none
    await _refused_read(routing, MATTERS_REGISTERED_V2.name + ".dlq", "xinfang-routing-dlq")


async def test_a_wrong_password_gets_nowhere(secured: Secured) -> None:
    wrong = KafkaConnection(secured.bootstrap).as_principal(f"unit-{UNIT}", "not-its-password")
    with pytest.raises((KafkaError, KafkaConnectionError)):
        await _write(wrong, unit_feedback_topic(UNIT))
    stranger = KafkaConnection(secured.bootstrap).as_principal("unit-city-9999", "made-up")
    with pytest.raises((KafkaError, KafkaConnectionError)):
        await _write(stranger, unit_feedback_topic(UNIT))

"""Kafka figures: submissions through intake (produce to a channel topic → the matters.registered.v2 events
of the intake under test), and the baseline of the same path without the service: produce to a bench topic →
a consumer that takes it as intake does and produces it again as the outbox relay does (kafka_baseline.py, a
process of its own like the service) → the bench's consumer reads it from a second bench topic."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from xinfang_shared.contracts.reference import Channel
from xinfang_shared.contracts.topics import CHANNEL_SUBMITTED, MATTERS_REGISTERED_V2

from .common import Payload, topic

CHANNEL_TOPIC = topic(CHANNEL_SUBMITTED[Channel.LETTER].name)
REGISTERED_TOPIC = topic(MATTERS_REGISTERED_V2.name)

# external_id → {matter_id → when it was first seen}
Arrivals = dict[str, dict[str, float]]


@dataclass(frozen=True)
class RoundTrip:
    n: int
    produce_s: float  # first send → last acknowledgement
    total_s: float | None  # first send → last one seen at the other end; None when not all arrived in time
    arrived: int

    @property
    def rate(self) -> float:
        return self.n / self.total_s if self.total_s else 0.0

    @property
    def produce_rate(self) -> float:
        return self.n / self.produce_s if self.produce_s else 0.0


def producer(bootstrap: str) -> AIOKafkaProducer:
    """What the bench produces the input with, as a channel system would (the same for every path and its
    baseline): aiokafka, acks=all, short linger."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5)


async def produce(bootstrap: str, topic: str, payloads: list[Payload]) -> tuple[float, float]:
    """Send every payload (key = external_id); returns (started, all acknowledged) perf_counter times."""
    prod = producer(bootstrap)
    await prod.start()
    try:
        started = time.perf_counter()
        futures = [await prod.send(topic, value=p.body, key=p.external_id.encode()) for p in payloads]
        await asyncio.gather(*futures)
        return started, time.perf_counter()
    finally:
        await prod.stop()


async def _collect(consumer: AIOKafkaConsumer, wanted: set[str], arrivals: Arrivals) -> None:
    """Note when each event about a wanted external_id is first seen, until cancelled."""
    while True:
        batches = await consumer.getmany(timeout_ms=100, max_records=5000)
        now = time.perf_counter()
        for records in batches.values():
            for record in records:
                event = orjson.loads(record.value or b"{}")
                external_id = event.get("external_id")
                if external_id in wanted:
                    arrivals.setdefault(external_id, {}).setdefault(str(event.get("matter_id", "")), now)


async def _wait(
    done: Callable[[], Awaitable[float | None]], timeout_s: float, alive: Callable[[], None]
) -> float | None:
    """Poll `done` (which returns the finishing time once everything arrived) until it answers or time is up."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        alive()
        finished = await done()
        if finished is not None:
            return finished
        await asyncio.sleep(0.2)
    return None


# ------------------------------------------------------------------------------------------- baseline


async def create_topic(bootstrap: str, name: str, partitions: int = 12) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def delete_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def _collect_keys(consumer: AIOKafkaConsumer, wanted: set[bytes], arrivals: dict[bytes, float]) -> None:
    """Note when each wanted key is first seen (decoding every value, as the service paths' reader does)."""
    while True:
        batches = await consumer.getmany(timeout_ms=100, max_records=5000)
        now = time.perf_counter()
        for records in batches.values():
            for record in records:
                orjson.loads(record.value or b"{}")
                if record.key in wanted:
                    arrivals.setdefault(record.key, now)


async def baseline_roundtrip(
    bootstrap: str, source: str, target: str, payloads: list[Payload], alive: Callable[[], None], timeout_s: float
) -> RoundTrip:
    """Produce the payloads to `source` (as the service paths do); done when every one (by key) has come
    back on `target` through the baseline process (kafka_baseline.py, already in its group)."""
    wanted = {p.external_id.encode() for p in payloads}
    arrivals: dict[bytes, float] = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    collecting: asyncio.Task[None] | None = None
    try:
        partitions = [TopicPartition(target, p) for p in await _partitions(bootstrap, target)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        collecting = asyncio.create_task(_collect_keys(consumer, wanted, arrivals))
        started, acked = await produce(bootstrap, source, payloads)

        async def done() -> float | None:
            return max(arrivals.values()) if len(arrivals) == len(wanted) else None

        finished = await _wait(done, timeout_s=timeout_s, alive=alive)
    finally:
        if collecting is not None:
            collecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collecting
        await consumer.stop()
    return RoundTrip(len(payloads), acked - started, finished - started if finished else None, len(arrivals))


# --------------------------------------------------------------------------------------------- intake


async def intake_roundtrip(
    bootstrap: str,
    payloads: list[Payload],
    registered_by_bench: Callable[[list[str]], Awaitable[dict[str, str]]],
    alive: Callable[[], None],
    timeout_s: float,
) -> RoundTrip:
    """Produce to the letter channel topic; done when every submission's matters.registered.v2 event from
    the intake under test has been seen. A running `make up` intake registers the same submissions in its
    own database and publishes events for them too: those are told apart by matter_id, which is looked up
    in the bench database (`registered_by_bench`)."""
    wanted = {p.external_id for p in payloads}
    arrivals: Arrivals = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    collecting: asyncio.Task[None] | None = None
    try:
        partitions = [TopicPartition(REGISTERED_TOPIC, p) for p in await _partitions(bootstrap, REGISTERED_TOPIC)]
        consumer.assign(partitions)
        for tp, offset in (await consumer.end_offsets(partitions)).items():
            consumer.seek(tp, offset)
        collecting = asyncio.create_task(_collect(consumer, wanted, arrivals))
        started, acked = await produce(bootstrap, CHANNEL_TOPIC, payloads)
        ours: dict[str, str] = {}

        async def done() -> float | None:
            if len(arrivals) < len(wanted):
                return None
            if len(ours) < len(wanted):
                ours.update(await registered_by_bench(sorted(wanted - ours.keys())))
            if len(ours) < len(wanted) or any(m not in arrivals[e] for e, m in ours.items()):
                return None
            return max(arrivals[e][m] for e, m in ours.items())

        finished = await _wait(done, timeout_s=timeout_s, alive=alive)
        if finished is None:  # for the report: how many the intake under test did register and publish
            ours.update(await registered_by_bench(sorted(wanted - ours.keys())))
        arrived = sum(1 for e, m in ours.items() if m in arrivals.get(e, {}))
    finally:
        if collecting is not None:
            collecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collecting
        await consumer.stop()
    return RoundTrip(len(payloads), acked - started, finished - started if finished else None, arrived)


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for p in described["partitions"])

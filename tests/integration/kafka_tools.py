"""Kafka helpers for tests: start a consumer group at the topics' current end, and tail topics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from xinfang_shared.contracts.topics import CONTRACT_TOPICS


def consumed_by(service: str) -> list[str]:
    """Every topic `service` reads, by the registry (which a contract test holds to its subscriptions)."""
    return [t.name for t in CONTRACT_TOPICS if service in t.consumers]


async def start_group_at_end(bootstrap: str, group: str, topics: list[str]) -> None:
    """Commit `group`'s offsets at the end of `topics`, so a service started with that group reads only
    what is produced from now on (the shared topics hold other runs' messages)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in (consumer.partitions_for_topic(t) or await _parts(consumer, t))
        ]
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.commit({tp: offset for tp, offset in ends.items()})
    finally:
        await consumer.stop()


async def _parts(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


class Tail:
    """Collects every record produced to `topics` after `start()`."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.records: list[ConsumerRecord[Any, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None)
        await consumer.start()
        partitions = [TopicPartition(t, p) for t in self.topics for p in await _parts(consumer, t)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # resolve the end now, before anything is produced
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            for part in batch.values():
                self.records.extend(part)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    def on(self, topic: str) -> list[ConsumerRecord[Any, Any]]:
        return [r for r in self.records if r.topic == topic]

    async def wait(
        self, topic: str, match: Callable[[ConsumerRecord[Any, Any]], bool], count: int = 1, timeout: float = 30.0
    ) -> list[ConsumerRecord[Any, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [r for r in self.on(topic) if match(r)]
            if len(found) >= count:
                return found
            if loop.time() > deadline:
                raise AssertionError(f"expected {count} matching records on {topic}, saw {len(found)}")
            await asyncio.sleep(0.05)


async def outbox_published(pool: asyncpg.Pool, timeout: float = 60.0) -> None:
    """Wait until every row in the service's outbox now has been published: the relay deletes a row only once
    Kafka acknowledged it. (Rows added meanwhile are not waited for.)"""
    last = await pool.fetchval("SELECT max(id) FROM outbox")
    if last is None:
        return

    async def gone() -> bool:
        return not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM outbox WHERE id <= $1)", last)

    await _eventually(gone, timeout)


async def read_to_end(tail: Tail, seen: Iterable[ConsumerRecord[Any, Any]], timeout: float = 30.0) -> None:
    """Wait until `tail` has read each partition of the `seen` records up to that partition's end now. With
    `outbox_published` before it, what is not in `tail` then did NOT happen: no sleep needed to prove it."""
    partitions = sorted({TopicPartition(r.topic, r.partition) for r in seen})
    if not partitions:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=tail.bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()

    def read(tp: TopicPartition) -> bool:
        return any(
            r.topic == tp.topic and r.partition == tp.partition and r.offset >= ends[tp] - 1 for r in tail.records
        )

    await _eventually(lambda: all(read(tp) for tp in partitions), timeout)


async def _eventually(check: Callable[[], Any], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def read_whole_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[ConsumerRecord[Any, Any]]:
    """Every record of `topic` from its beginning to its end as of now (all partitions)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list[ConsumerRecord[Any, Any]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in await _parts(consumer, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            if loop.time() > deadline:
                raise AssertionError(f"could not read {topic} to its end in {timeout} s")
            for part in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def pool_for(dsn: str, schema: str) -> asyncpg.Pool:
    """A small pool on a service's schema (to watch its outbox from a test)."""
    from xinfang_shared.db import create_pool

    return await create_pool(dsn, schema, min_size=1, max_size=2)

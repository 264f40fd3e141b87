"""xinfang-ops on the real broker and database: lag per group and partition, the dead-letter topics listed and
shown, a replay that sends each record back to its source topic with its original key exactly once (a second
replay sends nothing; a record dead-lettered later is replayed alone), and each service's outbox backlog."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from tests.integration.conftest import TopicFactory
from tests.integration.kafka_tools import read_whole_topic
from xinfang_shared import ops
from xinfang_shared.db import migrate_dsn
from xinfang_shared.kafka_auth import KafkaConnection
from xinfang_shared.messaging import H_ERROR_TYPE, H_SOURCE_OFFSET, H_SOURCE_TOPIC

NO_MIGRATIONS = Path("/nonexistent")


async def test_lag_per_group_and_partition_from_committed_and_end_offsets(
    bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic("ops-lag", partitions=2, dlq=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(topic, b"x", partition=i % 2)
    finally:
        await producer.stop()
    group = f"xinfang-test-ops-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(1, ""), TopicPartition(topic, 1): 3})
    finally:
        await consumer.stop()

    found = await ops.group_lags(KafkaConnection(bootstrap), [group])
    assert [(p.topic, p.partition, p.committed, p.end, p.lag) for p in found] == [
        (topic, 0, 1, 3, 2),
        (topic, 1, 3, 3, 0),
    ]
    everyone = await ops.group_lags(KafkaConnection(bootstrap))
    assert {p.group for p in everyone} >= {group}, "every xinfang-… group by default"

    # The command itself, as an operator runs it.
    env = os.environ | {"KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    command = [sys.executable, "-m", "xinfang_shared.ops", "lag", "--group", group]
    done = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["group", "topic", "partition", "committed", "end", "lag"]
    assert lines[1].split() == [group, topic, "0", "1", "3", "2"]


async def _dead_letter(bootstrap: str, dlq: str, records: list[tuple[bytes, bytes, dict[str, str]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(
                dlq, value, key=key, partition=0, headers=[(k, v.encode()) for k, v in headers.items()]
            )
    finally:
        await producer.stop()


async def test_a_dead_letter_topic_is_listed_shown_and_replayed_exactly_once(
    bootstrap: str, new_topic: TopicFactory
) -> None:
    source = await new_topic("ops-dlq", partitions=1)
    dlq = source + ".dlq"
    kafka = KafkaConnection(bootstrap)

    def dead(key: str, offset: int) -> tuple[bytes, bytes, dict[str, str]]:
        headers = {"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
        headers |= {H_SOURCE_TOPIC: source, H_SOURCE_OFFSET: str(offset), H_ERROR_TYPE: "ValidationError"}
        return key.encode(), f'{{"n": {offset}}}'.encode(), headers

    await _dead_letter(bootstrap, dlq, [dead("matter-a", 7), (b"junk", b"?", {}), dead("matter-b", 9)])

    assert (dlq, 3) in await ops.dead_letter_topics(kafka)
    shown = await ops.dead_letters(kafka, dlq)
    assert [(r.offset, r.key, r.source, r.handled) for r in shown] == [
        (0, b"matter-a", source, False),
        (1, b"junk", None, False),
        (2, b"matter-b", source, False),
    ]

    dry = await ops.replay(kafka, dlq, dry_run=True)
    assert (dry.replayed, dry.unreplayable) == ({source: 2}, [(0, 1)])
    assert await read_whole_topic(bootstrap, source) == [], "a dry run sends nothing"

    done = await ops.replay(kafka, dlq)
    assert (done.replayed, done.unreplayable, done.already) == ({source: 2}, [(0, 1)], 0)
    back = await read_whole_topic(bootstrap, source)
    assert [(r.key, r.value) for r in back] == [(b"matter-a", b'{"n": 7}'), (b"matter-b", b'{"n": 9}')]
    headers = [dict(r.headers) for r in back]
    assert [h["x-replayed-from"] for h in headers] == [f"{dlq}/0/0".encode(), f"{dlq}/0/2".encode()]
    assert all("traceparent" in h and not any(k.startswith("x-dlq-") for k in h) for h in headers)

    again = await ops.replay(kafka, dlq)
    assert (again.total, again.already) == (0, 3), "a second replay sends nothing"
    assert len(await read_whole_topic(bootstrap, source)) == 2
    assert [r.handled for r in await ops.dead_letters(kafka, dlq)] == [True, True, True], "the junk passed over"

    await _dead_letter(bootstrap, dlq, [dead("matter-c", 11)])
    later = await ops.replay(kafka, dlq)
    assert (later.replayed, later.already) == ({source: 1}, 3), "only the record dead-lettered since"
    assert [r.key for r in await read_whole_topic(bootstrap, source)] == [b"matter-a", b"matter-b", b"matter-c"]

    with pytest.raises(ValueError, match="not a dead-letter topic"):
        await ops.replay(kafka, source)


async def test_outbox_backlog_per_service(database: str) -> None:
    schemas = [f"ops_{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for schema in schemas:
        await migrate_dsn(database, schema, NO_MIGRATIONS)
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(
            f"INSERT INTO {schemas[1]}.outbox (topic, key, value, created_at)"
            " VALUES ('t', 'k', '{}', now() - interval '1 minute'), ('t', 'k', '{}', now())"
        )
    finally:
        await conn.close()
    found = await ops.outbox_backlogs(database, schemas)
    assert [(s, n) for s, n, _ in found] == [(schemas[0], 0), (schemas[1], 2)]
    assert found[0][2] == 0 and 60 <= found[1][2] < 90


async def test_a_replay_that_crashed_mid_transaction_is_fenced_and_nothing_is_sent_twice(
    bootstrap: str, new_topic: TopicFactory
) -> None:
    source = await new_topic("ops-crash", partitions=1)
    dlq = source + ".dlq"
    kafka = KafkaConnection(bootstrap)
    await _dead_letter(
        bootstrap, dlq, [(b"m1", b"1", {H_SOURCE_TOPIC: source}), (b"m2", b"2", {H_SOURCE_TOPIC: source})]
    )
    # A replay that sent the first record and its offset in a transaction, then died before committing it.
    crashed = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{ops.REPLAY_GROUP}:{dlq}")
    await crashed.start()
    await crashed.begin_transaction()
    await crashed.send_and_wait(source, b"1", key=b"m1")
    await crashed.send_offsets_to_transaction({TopicPartition(dlq, 0): 1}, ops.REPLAY_GROUP)
    await crashed.client.close()  # gone, its transaction open: no commit, no abort

    done = await ops.replay(kafka, dlq)
    assert (done.replayed, done.already) == ({source: 2}, 0), "its uncommitted work did not count"
    committed = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await committed.start()
    try:
        tp = TopicPartition(source, 0)
        committed.assign([tp])
        await committed.seek_to_beginning(tp)
        end = (await committed.end_offsets([tp]))[tp]
        seen: list[bytes] = []
        while await committed.position(tp) < end:
            for record in (await committed.getmany(tp, timeout_ms=2000)).get(tp, []):
                seen.append(record.key)
    finally:
        await committed.stop()
    assert seen == [b"m1", b"m2"], "a reader of committed records sees each once"

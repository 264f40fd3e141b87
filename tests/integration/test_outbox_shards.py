"""The outbox relay sharded by key, on the real broker and database: two relays of one schema both publish,
every row reaches the topic and each key's events arrive in the order they were written; `shards=1` is the
relay before sharding; a group another relay holds is retried later without a busy loop; `topic_prefix`; a pass
over an empty outbox costs one statement, not a transaction per group; a relay woken by the buckets its
notification names does not ask which groups have rows, and a row nobody was told of is published at the poll."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from tests.integration.conftest import TopicFactory, committed, eventually
from tests.integration.kafka_tools import read_whole_topic
from tests.integration.processes import private_database
from xinfang_shared.db import create_pool, migrate_dsn
from xinfang_shared.kafka_auth import KafkaConnection
from xinfang_shared.outbox import OutboxRelay, Outgoing, bucket_of, enqueue_many

NO_MIGRATIONS = Path("/nonexistent")


@dataclass
class Outbox:
    dsn: str
    schema: str
    pool: asyncpg.Pool


@pytest.fixture
async def box(database: str) -> AsyncIterator[Outbox]:
    schema = f"shards_{uuid.uuid4().hex[:8]}"
    await migrate_dsn(database, schema, NO_MIGRATIONS)
    pool = await create_pool(database, schema, max_size=4)
    yield Outbox(database, schema, pool)
    await pool.close()


@dataclass
class Running:
    relay: OutboxRelay
    task: asyncio.Task[None]
    pool: asyncpg.Pool
    metrics: CollectorRegistry

    @property
    def published(self) -> float:
        return self.metrics.get_sample_value("xinfang_outbox_published_total") or 0.0


RelayFactory = Callable[..., Awaitable[Running]]


@pytest.fixture
async def relays(box: Outbox, bootstrap: str) -> AsyncIterator[RelayFactory]:
    """Starts relays on `box`'s schema, each with its own pool, as separate instances would have."""
    running: list[Running] = []

    async def start(*, first_group: int | None = None, **kwargs: Any) -> Running:
        pool = await create_pool(box.dsn, box.schema, max_size=2)
        metrics = CollectorRegistry()
        relay = OutboxRelay(
            pool=pool,
            dsn=box.dsn,
            schema=box.schema,
            kafka=KafkaConnection(bootstrap),
            poll_interval_s=kwargs.pop("poll_interval_s", 0.2),
            metrics=metrics,
            **kwargs,
        )
        if first_group is not None:
            relay.next_group = first_group
        r = Running(relay, asyncio.create_task(relay.run()), pool, metrics)
        running.append(r)
        return r

    yield start
    for r in running:
        r.relay.stop()
    for r in running:
        await asyncio.wait_for(r.task, 30)
        await r.pool.close()


def _row(topic: str, key: str | None, seq: int) -> Outgoing:
    return Outgoing(topic, key, json.dumps({"key": key, "seq": seq}).encode())


async def _enqueue(pool: asyncpg.Pool, items: list[Outgoing]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await enqueue_many(conn, items)


def _outbox_empty(pool: asyncpg.Pool) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM outbox") == 0)

    return check


def _seqs(records: list[Any]) -> list[tuple[str | None, int]]:
    out = []
    for r in records:
        body = json.loads(r.value)
        out.append((body["key"], body["seq"]))
    return out


async def test_the_shard_column_is_the_keys_bucket_and_indexed(box: Outbox) -> None:
    keys = [f"matter-{i}" for i in range(200)]
    await _enqueue(box.pool, [_row("t", k, i) for i, k in enumerate(keys)] + [_row("t", None, 200)])
    rows = await box.pool.fetch("SELECT key, shard FROM outbox ORDER BY id")
    assert [r["shard"] for r in rows] == [bucket_of(k.encode()) for k in keys] + [0]
    assert len({r["shard"] for r in rows}) > 32
    indexdef = await box.pool.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'outbox_shard_id'", box.schema
    )
    assert indexdef is not None and "(shard, id)" in indexdef


async def test_two_relays_share_the_work_and_keep_each_keys_order(
    box: Outbox, relays: RelayFactory, new_topic: TopicFactory, bootstrap: str
) -> None:
    topic = await new_topic("shards", partitions=3, dlq=False)
    keys = [str(uuid.UUID(int=random.Random(i).getrandbits(128))) for i in range(50)]
    assert len({bucket_of(k.encode()) % 4 for k in keys}) == 4, "the keys cover every group"
    # Small batches, started on opposite groups: both relays have work from the first rows on.
    a = await relays(shards=4, batch_size=40, first_group=0)
    b = await relays(shards=4, batch_size=40, first_group=2)

    rng = random.Random(7)
    total = 2000
    seq = 0
    while seq < total:  # 100 transactions of 20 rows, written while both relays run
        batch = [_row(topic, rng.choice(keys), s) for s in range(seq, seq + 20)]
        await _enqueue(box.pool, batch)
        seq += 20
        await asyncio.sleep(0.005)

    await eventually(_outbox_empty(box.pool), timeout=60)
    records = await read_whole_topic(bootstrap, topic)
    got = _seqs(records)
    assert {s for _, s in got} == set(range(total)), "every row published at least once"
    # Per key, the first time each event arrives is the order it was written (records of one partition are
    # read in offset order, and a key has one partition). A duplicate after a retry would be allowed.
    by_key: dict[str | None, list[int]] = defaultdict(list)
    seen: set[int] = set()
    for key, s in got:
        if s not in seen:
            seen.add(s)
            by_key[key].append(s)
    assert set(by_key) == set(keys)
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs), f"{key}: events out of order"
    assert a.published > 0 and b.published > 0, (a.published, b.published)
    assert a.published + b.published >= total


async def test_with_one_shard_one_lock_for_the_schema_and_the_whole_outbox_in_id_order(
    box: Outbox, relays: RelayFactory, new_topic: TopicFactory, bootstrap: str
) -> None:
    topic = await new_topic("oneshard", partitions=1, dlq=False)
    # The lock the relay took before sharding: held elsewhere, a shards=1 relay publishes nothing.
    holder = await asyncpg.connect(box.dsn)
    try:
        await holder.execute("SELECT pg_advisory_lock(hashtext($1))", f"outbox:{box.schema}")
        r = await relays(batch_size=7)  # shards=1 by default
        items = [_row(topic, f"k{i % 5}" if i % 3 else None, i) for i in range(60)]
        await _enqueue(box.pool, items[:30])
        await asyncio.sleep(1.0)
        assert r.published == 0
        assert await box.pool.fetchval("SELECT count(*) FROM outbox") == 30
        await holder.execute("SELECT pg_advisory_unlock(hashtext($1))", f"outbox:{box.schema}")
        await _enqueue(box.pool, items[30:])
        await eventually(_outbox_empty(box.pool), timeout=30)
    finally:
        await holder.close()
    records = await read_whole_topic(bootstrap, topic)
    # One relay, one partition: the topic holds the outbox in id order, across keys and NULL keys.
    assert [s for _, s in _seqs(records)] == list(range(60))
    assert r.published == 60


async def test_a_group_held_elsewhere_is_published_once_free_and_the_wait_is_not_a_busy_loop(
    box: Outbox, relays: RelayFactory, new_topic: TopicFactory, bootstrap: str
) -> None:
    topic = await new_topic("held", partitions=3, dlq=False)
    keys = [f"matter-{i}" for i in range(40)]
    held = bucket_of(keys[0].encode()) % 4
    holder = await asyncpg.connect(box.dsn)
    try:
        await holder.execute("SELECT pg_advisory_lock(hashtext($1))", f"outbox:{box.schema}:{held}/4")
        r = await relays(shards=4, poll_interval_s=0.2)
        passes = 0
        publish_pass = r.relay.publish_pass

        async def counted(hinted: set[int] | None = None) -> tuple[int, bool]:
            nonlocal passes
            passes += 1
            return await publish_pass(hinted)

        r.relay.publish_pass = counted  # type: ignore[method-assign]
        await _enqueue(box.pool, [_row(topic, k, i) for i, k in enumerate(keys)])
        in_held = sum(1 for k in keys if bucket_of(k.encode()) % 4 == held)
        await eventually(lambda: r.published == len(keys) - in_held, timeout=30)
        # The held group waits; the relay looks again at each poll (0.2 s), not in a loop.
        passes = 0
        await asyncio.sleep(2.0)
        assert await box.pool.fetchval("SELECT count(*) FROM outbox") == in_held
        assert 3 <= passes <= 20, passes
        assert r.published == len(keys) - in_held
        # Released (as by a relay that stopped): published at the next poll, with no new row to wake it.
        await holder.execute("SELECT pg_advisory_unlock(hashtext($1))", f"outbox:{box.schema}:{held}/4")
        await eventually(_outbox_empty(box.pool), timeout=10)
    finally:
        await holder.close()
    assert r.published == len(keys)
    assert sorted(s for _, s in _seqs(await read_whole_topic(bootstrap, topic))) == list(range(len(keys)))


async def test_topic_prefix_puts_rows_on_the_prefixed_topic(
    box: Outbox, relays: RelayFactory, new_topic: TopicFactory, bootstrap: str
) -> None:
    topic = await new_topic("prefixed", partitions=1, dlq=False)
    prefix = "test."
    logical = topic.removeprefix(prefix)
    await _enqueue(box.pool, [_row(logical, "k", i) for i in range(5)])
    assert await box.pool.fetchval("SELECT DISTINCT topic FROM outbox") == logical, "rows keep the logical name"
    r = await relays(shards=4, topic_prefix=prefix)
    await eventually(_outbox_empty(box.pool), timeout=30)
    assert [s for _, s in _seqs(await read_whole_topic(bootstrap, topic))] == list(range(5))
    assert r.published == 5


async def test_a_pass_over_an_empty_outbox_is_one_statement_not_a_transaction_per_group(
    database: str, stack: dict[str, str], bootstrap: str
) -> None:
    # A database of its own (not the tests' shared one, where another test's service may still be winding down),
    # so that the relay's are the only sessions counted.
    async with private_database(stack["DATABASE_URL"]) as own:
        await _idle_passes_commit_once_each(own, stack["DATABASE_URL"], bootstrap)


async def _idle_passes_commit_once_each(database: str, admin_dsn: str, bootstrap: str) -> None:
    schema = f"idle_{uuid.uuid4().hex[:8]}"
    await migrate_dsn(database, schema, NO_MIGRATIONS)
    name = database.rsplit("/", 1)[1]
    before = await committed(admin_dsn, name)
    pool = await create_pool(database, schema, max_size=2)
    relay = OutboxRelay(
        pool=pool, dsn=database, schema=schema, kafka=KafkaConnection(bootstrap), shards=4, poll_interval_s=0.05
    )
    passes = 0
    publish_pass = relay.publish_pass

    async def counted(hinted: set[int] | None = None) -> tuple[int, bool]:
        nonlocal passes
        passes += 1
        return await publish_pass(hinted)

    relay.publish_pass = counted  # type: ignore[method-assign]
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(2.0)
    relay.stop()
    await asyncio.wait_for(task, 30)
    await pool.close()
    commits = await committed(admin_dsn, name) - before
    # Each pass is its one question (a transaction of its own); besides, the pool's start-up and the LISTEN. Four
    # groups each in a transaction, and the pool's reset after each pass, would be five a pass.
    assert passes >= 10, passes
    assert passes <= commits <= passes + 10, (passes, commits)


async def test_a_wake_up_names_its_buckets_so_the_pass_asks_nothing_and_the_poll_finds_the_rest(
    box: Outbox, relays: RelayFactory, new_topic: TopicFactory, bootstrap: str
) -> None:
    topic = await new_topic("hinted", partitions=3, dlq=False)
    r = await relays(shards=4, poll_interval_s=2.0)
    asked = 0
    groups_with_rows = r.relay._groups_with_rows

    async def counted() -> set[int]:
        nonlocal asked
        asked += 1
        return await groups_with_rows()

    r.relay._groups_with_rows = counted  # type: ignore[method-assign]
    await asyncio.sleep(2.5)  # past the first pass and a poll: from here on only wake-ups
    asked = 0
    for n in range(5):
        await _enqueue(box.pool, [_row(topic, f"matter-{n}-{i}", 10 * n + i) for i in range(10)])
        await eventually(lambda n=n: r.published == 10 * (n + 1), timeout=10)
    assert asked <= 1, f"{asked} passes asked which groups have rows (a poll may fall in between)"

    # A row written while no notification goes out (as one that came while the relay was not listening): found
    # by the poll's question.
    async with box.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE outbox DISABLE TRIGGER outbox_notify")
        await enqueue_many(conn, [_row(topic, "quiet", 50)])
        await conn.execute("ALTER TABLE outbox ENABLE TRIGGER outbox_notify")
    await eventually(_outbox_empty(box.pool), timeout=10)
    assert asked >= 1 and r.published == 51
    assert sorted(s for _, s in _seqs(await read_whole_topic(bootstrap, topic))) == list(range(51))

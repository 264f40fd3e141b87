"""The outbox relay's lock groups, without a broker or a database: how the 64 buckets split into groups, the
lock and query of `shards=1` (the relay before sharding), the settings' bounds, and what a pass asks of the
database (recorded by stand-ins): one statement when the outbox is empty, a transaction only for a group with
rows."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from xinfang_shared.db import SHARED_MIGRATIONS
from xinfang_shared.kafka_auth import KafkaConnection
from xinfang_shared.outbox import BUCKETS, OutboxRelay, bucket_group, bucket_of
from xinfang_shared.settings import ServiceSettings


def _relay(**kwargs: Any) -> OutboxRelay:
    # The pool is only used while publishing.
    kwargs.setdefault("pool", None)
    return OutboxRelay(dsn="postgresql://unused", schema="intake", kafka=KafkaConnection("unused"), **kwargs)


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7, 64])
def test_every_bucket_is_in_exactly_one_group(shards: int) -> None:
    groups = [bucket_group(shards, g) for g in range(shards)]
    assert sorted(b for g in groups for b in g) == list(range(BUCKETS))
    for g, buckets in enumerate(groups):
        assert all(b % shards == g for b in buckets)


def test_a_keys_bucket_is_the_first_byte_of_its_sha256_and_no_key_is_bucket_0() -> None:
    key = b"0d9e6a8e-4a0c-4d2b-9f0e-7b3c1a2d5e6f"
    assert bucket_of(key) == hashlib.sha256(key).digest()[0] % 64
    assert bucket_of(None) == 0
    assert len({bucket_of(f"matter-{i}".encode()) for i in range(2000)}) == BUCKETS


def test_the_migration_computes_the_same_bucket() -> None:
    sql = (SHARED_MIGRATIONS / "0002_outbox_shards.sql").read_text(encoding="utf-8")
    assert "get_byte(sha256(key), 0) % 64" in sql
    assert BUCKETS == 64


def test_shards_1_takes_the_lock_and_the_query_of_the_relay_before_sharding() -> None:
    relay = _relay()
    assert relay.shards == 1
    assert relay._locks == ["outbox:intake"]
    assert relay._select == 'SELECT id, topic, key, value, headers FROM "intake".outbox ORDER BY id LIMIT $1 FOR UPDATE'
    assert relay.next_group == 0
    assert relay.topic_prefix == ""


def test_each_group_has_its_own_lock() -> None:
    relay = _relay(shards=4)
    assert relay._locks == [f"outbox:intake:{g}/4" for g in range(4)]
    assert relay._buckets[1] == list(range(1, 64, 4))
    assert "WHERE shard = ANY($2::smallint[])" in relay._select
    assert 0 <= relay.next_group < 4


@pytest.mark.parametrize("shards", [0, -1, 65])
def test_shards_out_of_range_are_refused(shards: int) -> None:
    with pytest.raises(ValueError, match="shards"):
        _relay(shards=shards)


def test_the_setting_defaults_to_4_and_is_bounded() -> None:
    def settings(**kwargs: Any) -> ServiceSettings:
        return ServiceSettings(environment="test", _env_file=None, **kwargs)

    assert settings().outbox_shards == 4
    assert settings(outbox_shards=64).outbox_shards == 64
    for bad in (0, 65):
        with pytest.raises(ValidationError):
            settings(outbox_shards=bad)


# --- what a pass asks of the database ------------------------------------------------------------------


class Database:
    """Stand-ins for the relay's listening connection and its pool, over an outbox of (id, bucket) rows; every
    statement and transaction is recorded, in order, as (connection, what)."""

    def __init__(
        self, relay: OutboxRelay, metrics: CollectorRegistry, buckets: list[int], held: frozenset[str]
    ) -> None:
        self.relay = relay
        self.metrics = metrics
        self.rows = list(enumerate(buckets, start=1))
        self.held = held  # advisory locks another relay holds
        self.calls: list[tuple[str, str]] = []
        self.acquired = 0

    def sample(self, name: str) -> float | None:
        return self.metrics.get_sample_value(name)

    def connection(self, name: str) -> Any:
        db = self

        class Connection:
            def is_closed(self) -> bool:
                return False

            @asynccontextmanager
            async def transaction(self) -> AsyncIterator[None]:
                db.calls.append((name, "BEGIN"))
                try:
                    yield
                except BaseException:
                    db.calls.append((name, "ROLLBACK"))
                    raise
                db.calls.append((name, "COMMIT"))

            async def fetch(self, sql: str, *args: Any, timeout: float | None = None) -> list[dict[str, Any]]:
                if sql == db.relay._pending:
                    db.calls.append((name, "which groups have rows"))
                    present = sorted({b for _, b in db.rows})
                    return [{"shard": b} for b in (present[:1] if db.relay.shards == 1 else present)]
                assert sql == db.relay._select
                limit, *buckets = args
                db.calls.append((name, f"select {buckets[0] if buckets else 'all'}"))
                rows = [(i, b) for i, b in db.rows if not buckets or b in buckets[0]][:limit]
                return [{"id": i, "topic": "t", "key": None, "value": b"{}", "headers": {}} for i, _ in rows]

            async def fetchval(self, sql: str, lock: str) -> bool:
                assert "pg_try_advisory_xact_lock" in sql
                db.calls.append((name, f"lock {lock}"))
                return lock not in db.held

            async def execute(self, sql: str, ids: list[int]) -> None:
                assert sql == db.relay._delete
                db.calls.append((name, f"delete {len(ids)}"))
                db.rows = [(i, b) for i, b in db.rows if i not in ids]

        return Connection()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        self.acquired += 1
        yield self.connection("pool")

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self.acquire() as conn:
            rows: list[dict[str, Any]] = await conn.fetch(sql, *args)
            return rows

    def transactions(self) -> int:
        return sum(1 for _, what in self.calls if what == "BEGIN")


class Producer:
    def __init__(self) -> None:
        self.produced = 0

    def produce(self, *_: Any, **__: Any) -> None:
        self.produced += 1

    def flush(self, _: float) -> int:
        return 0


def _running(buckets: list[int], *, held: frozenset[str] = frozenset(), **kwargs: Any) -> tuple[OutboxRelay, Database]:
    """A relay as `run` has it (listening, with a producer), over an outbox whose rows are in `buckets`."""
    metrics = CollectorRegistry()
    relay = _relay(metrics=metrics, **kwargs)
    db = Database(relay, metrics, buckets, held)
    relay.pool = db  # type: ignore[assignment]
    relay._listener = db.connection("listener")
    relay._producer = Producer()  # type: ignore[assignment]
    return relay, db


@pytest.mark.parametrize("shards", [1, 4, 64])
async def test_a_pass_over_an_empty_outbox_is_one_statement_and_no_transaction(shards: int) -> None:
    relay, db = _running([], shards=shards)
    assert await relay.publish_pass() == (0, False)
    assert db.calls == [("listener", "which groups have rows")]
    assert db.acquired == 0, "no connection taken from the pool"


async def test_a_pass_opens_a_transaction_only_for_the_groups_with_rows_in_its_turn_order() -> None:
    # Rows in groups 1 (buckets 1, 5) and 2 (bucket 6) of 4; the pass starts at group 2, so 2, 3, 0, 1.
    relay, db = _running([5, 6, 1, 5], shards=4)
    relay.next_group = 2
    assert await relay.publish_pass() == (4, False)
    assert db.calls == [
        ("listener", "which groups have rows"),
        ("pool", "BEGIN"),
        ("pool", "lock outbox:intake:2/4"),
        ("pool", f"select {bucket_group(4, 2)}"),
        ("pool", "delete 1"),
        ("pool", "COMMIT"),
        ("pool", "BEGIN"),
        ("pool", "lock outbox:intake:1/4"),
        ("pool", f"select {bucket_group(4, 1)}"),
        ("pool", "delete 3"),
        ("pool", "COMMIT"),
    ]
    assert db.acquired == 1 and db.rows == []
    assert relay.next_group == 3, "the next pass starts one further, whichever groups had rows"
    assert db.sample("xinfang_outbox_published_total") == 4


async def test_a_full_batch_says_more_until_the_group_is_empty() -> None:
    relay, db = _running([3] * 5, shards=4, batch_size=2)
    assert await relay.publish_pass() == (2, True)
    assert db.transactions() == 1 and len(db.rows) == 3
    assert await relay.publish_pass() == (2, True)
    assert await relay.publish_pass() == (1, False)
    assert await relay.publish_pass() == (0, False)
    assert db.transactions() == 3, "the last pass found nothing and opened nothing"


async def test_a_group_with_rows_held_elsewhere_is_left() -> None:
    relay, db = _running([0, 2], shards=4, held=frozenset({"outbox:intake:2/4"}))
    relay.next_group = 0
    assert await relay.publish_pass() == (1, False)
    assert await relay.publish_pass() == (0, False)
    assert db.rows == [(2, 2)], "only the holder of group 2 publishes its row"
    # The second pass: one statement, then group 2 only (group 0 is empty now), whose lock it does not get.
    assert db.calls[-4:] == [
        ("listener", "which groups have rows"),
        ("pool", "BEGIN"),
        ("pool", "lock outbox:intake:2/4"),
        ("pool", "COMMIT"),
    ]


async def test_with_one_shard_a_pass_asks_whether_there_is_a_row_then_takes_the_schemas_lock() -> None:
    relay, db = _running([7, 0, 7], batch_size=10)
    assert relay._pending == 'SELECT 0 AS shard FROM "intake".outbox LIMIT 1'
    assert await relay.publish_pass() == (3, False)
    assert db.calls == [
        ("listener", "which groups have rows"),
        ("pool", "BEGIN"),
        ("pool", "lock outbox:intake"),
        ("pool", "select all"),
        ("pool", "delete 3"),
        ("pool", "COMMIT"),
    ]


async def test_without_a_listening_connection_the_pool_answers_which_groups_have_rows() -> None:
    relay, db = _running([], shards=4)
    relay._listener = None
    assert await relay.publish_pass() == (0, False)
    assert db.calls == [("pool", "which groups have rows")] and db.transactions() == 0


def test_the_question_is_a_skip_scan_of_the_shard_index() -> None:
    pending = _relay(shards=4)._pending
    assert pending.startswith("WITH RECURSIVE")
    assert 'FROM "intake".outbox ORDER BY shard LIMIT 1' in pending
    assert "WHERE o.shard > b.shard ORDER BY o.shard LIMIT 1" in pending

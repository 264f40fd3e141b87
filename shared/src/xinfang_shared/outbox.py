"""Transactional outbox: what a service publishes is written in the same transaction as its domain change,
and a relay moves it to Kafka.

Each row stores the W3C trace context of the work that wrote it in its headers (tracing.py: the record it came
from in a batch consumer, the request that submitted it, or the context current when it was written), so the
trace continues from what caused it even though the relay sends it later; with spans recorded, the relay makes
a `send <topic>` span per row under that context, and the record carries the send span's context.

Every instance runs a relay, and they share the work by key: each row falls, by its key, in one of 64 buckets (the
`shard` column of shared migration 0002, a NULL key in bucket 0), and the buckets are split into `shards` lock
groups (bucket b in group b % shards), one advisory lock each. A pass takes the groups the notifications since the
last pass named (the trigger of shared migration 0003 names the buckets a statement wrote), and the groups whose
last batch was full; after the poll's timeout, at start and after a failure it asks instead, in one statement
outside any transaction, which groups have rows at all (an idle pass costs that statement, not a transaction per
group; on a busy outbox it was the costliest statement of a matter, hence the names). Then it goes round those
groups, starting one further each pass so that two relays do not keep meeting on the same one; for each group whose
lock it gets it publishes the group's oldest rows, in id order, in one transaction; a group another relay holds it
leaves to that relay (told of the same rows) and looks at again at the poll. The rows of a key are always in one
group, and only the holder of its lock publishes them, so the events of a matter reach Kafka in the order they were
written, whichever instance sends them; the events of different keys are not ordered. With `shards=1` there is one
lock for the schema, as before.

Each transaction sends one group's batch (acks=all), waits for every acknowledgement, then deletes the rows.
If Kafka is unreachable the transaction rolls back and the rows wait; `LISTEN/NOTIFY` wakes the relay as soon
as rows arrive, and a slow poll covers a lost notification and a group another relay stopped holding.
`topic_prefix` is put before each row's topic when it is produced; rows keep the logical name.

The relay's producer is librdkafka (confluent-kafka), not aiokafka: it encodes, partitions and sends in C on
its own threads, off the service's event loop, which aiokafka did in Python for every event (a fifth of
intake's CPU per submission). Its partitioner is murmur2, the Java client's and aiokafka's, so a matter_id
lands on the same partition whichever client publishes for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from confluent_kafka import KafkaError as DeliveryError
from confluent_kafka import KafkaException, Message, Producer
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel

from . import tracing
from .crashpoints import crash_point
from .db import quote_ident
from .kafka_auth import KafkaConnection

log = logging.getLogger(__name__)

# How many buckets shared migration 0002 spreads the keys over; `shards` can split them into at most this many
# lock groups.
BUCKETS = 64
# The listening connection has no command timeout of its own: how long the question of which groups have rows
# may take before it is cancelled (and the pass retried), as the pool's statements.
PENDING_TIMEOUT_S = 60.0
# The backlog gauge counts at most this many rows (the oldest row's age says the rest).
MEASURE_CAP = 100_000


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: str | None
    # The event, or its JSON already serialised (a hot path that built it from validated parts).
    event: BaseModel | bytes
    # The trace context the row carries to Kafka (W3C headers); None: tracing.py decides (the batch's record
    # with this key, or the context current when it is written).
    context: Mapping[str, str] | None = None

    def value(self) -> bytes:
        return self.event if isinstance(self.event, bytes) else self.event.model_dump_json().encode()


async def enqueue(conn: asyncpg.Connection, topic: str, event: BaseModel, *, key: str | None) -> None:
    """Add one event to the outbox, inside the caller's transaction."""
    await enqueue_many(conn, [Outgoing(topic, key, event)])


async def enqueue_many(conn: asyncpg.Connection, items: Sequence[Outgoing]) -> None:
    """One statement for the lot (one round trip, and one NOTIFY to the relay)."""
    if not items:
        return
    contexts = tracing.carriers([(i.key, i.context) for i in items])
    await conn.execute(
        "INSERT INTO outbox (topic, key, value, headers)"
        " SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::jsonb[])",
        [i.topic for i in items],
        [i.key.encode() if i.key is not None else None for i in items],
        [i.value() for i in items],
        [{"content-type": "application/json", **c} for c in contexts],
    )


class PublishFailed(Exception):
    """Kafka did not acknowledge every event of a batch; the batch is rolled back and sent again."""


class OutboxRelay:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        dsn: str,
        schema: str,
        kafka: KafkaConnection,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        metrics: CollectorRegistry | None = None,
        shards: int = 1,
        topic_prefix: str = "",
        tracer: Tracer | None = None,
    ) -> None:
        if not 1 <= shards <= BUCKETS:
            raise ValueError(f"shards must be between 1 and {BUCKETS}, not {shards}")
        self.pool = pool
        self.dsn = dsn
        self.schema = schema
        self.channel = f"{schema}_outbox"
        self.kafka = kafka
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.shards = shards
        self.topic_prefix = topic_prefix
        self.tracer = tracer
        table = f"{quote_ident(schema)}.outbox"
        columns = "id, topic, key, value, headers"
        if shards == 1:
            # The lock and the query of the relay before sharding, so the two exclude each other.
            self._locks = [f"outbox:{schema}"]
            self._select = f"SELECT {columns} FROM {table} ORDER BY id LIMIT $1 FOR UPDATE"
            self._buckets: list[list[int]] = [[]]
            # Whether there is a row at all (its bucket does not matter: one group).
            self._pending = f"SELECT 0 AS shard FROM {table} LIMIT 1"
        else:
            self._locks = [f"outbox:{schema}:{group}/{shards}" for group in range(shards)]
            self._select = (
                f"SELECT {columns} FROM {table} WHERE shard = ANY($2::smallint[]) ORDER BY id LIMIT $1 FOR UPDATE"
            )
            self._buckets = [bucket_group(shards, group) for group in range(shards)]
            # The buckets that have rows: a skip scan of the (shard, id) index, one descent per bucket present
            # and one more (at most 65, whatever the backlog; one on an empty outbox).
            self._pending = (
                f"WITH RECURSIVE b(shard) AS ((SELECT shard FROM {table} ORDER BY shard LIMIT 1)"
                f" UNION ALL SELECT (SELECT o.shard FROM {table} o WHERE o.shard > b.shard ORDER BY o.shard LIMIT 1)"
                " FROM b WHERE b.shard IS NOT NULL)"
                " SELECT shard FROM b WHERE shard IS NOT NULL"
            )
        self._delete = f"DELETE FROM {table} WHERE id = ANY($1::bigint[])"
        # For /metrics only (a scrape, not a pass): how many rows wait (counted up to MEASURE_CAP, so a scrape
        # stays cheap on the outbox a long Kafka outage filled), and since when the oldest.
        self._measure = (
            f"SELECT (SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT {MEASURE_CAP}) AS capped) AS n,"
            f" extract(epoch FROM now() - (SELECT created_at FROM {table} ORDER BY id LIMIT 1)) AS age"
        )
        # The group each pass starts from: random, so relays started together seldom begin on the same one.
        self.next_group = random.randrange(shards)
        self._wake = asyncio.Event()
        # The buckets the wake-ups since the last pass named (shared migration 0003), or None when the next pass
        # must ask the outbox which groups have rows: at start, after the poll's timeout (a lost notification, a
        # group another relay stopped holding), after a failure, or for a wake-up that named none.
        self._hinted: set[int] | None = None
        # Groups whose last batch was full: the next pass looks at them again whatever wakes it.
        self._full: set[int] = set()
        self._stopping = False
        # The connection that listens for new rows, while `run` holds one: it also asks which groups have rows,
        # so an idle pass takes no connection from the pool (whose release costs a reset statement).
        self._listener: asyncpg.Connection | None = None
        # Since when (loop time) and why publishing keeps failing; None while it works. /health reports it: a
        # relay that cannot publish (Kafka away, a topic missing) holds back everything its service writes.
        self.failing: tuple[float, str, str] | None = None  # (since, the error's type, its text)
        self._producer: Producer | None = None
        registry = metrics or CollectorRegistry()
        self.published = Counter("xinfang_outbox_published", "Outbox rows published to Kafka", registry=registry)
        self.failures = Counter(
            "xinfang_outbox_publish_failures", "Relay batches that failed and were retried", registry=registry
        )
        self.backlog = Gauge("xinfang_outbox_backlog", "Outbox rows not yet published", registry=registry)
        self.oldest = Gauge(
            "xinfang_outbox_oldest_age_seconds",
            "How long the oldest row not yet published has waited (0 with none)",
            registry=registry,
        )

    def problem(self, grace_s: float = 10.0, *, detail: bool = True) -> str | None:
        """Why publishing has been failing for more than `grace_s` (a blip is not a problem), or None; without
        `detail`, the error's type only (its text can name hosts, topics and principals)."""
        if self.failing is None:
            return None
        since, kind, reason = self.failing
        for_s = asyncio.get_running_loop().time() - since
        return f"failing for {for_s:.0f} s: {reason if detail else kind}" if for_s > grace_s else None

    async def run(self) -> None:
        """Relay until cancelled. Survives Kafka and PostgreSQL outages."""
        listener: asyncpg.Connection | None = None
        failures = 0
        try:
            while not self._stopping:
                try:
                    if listener is None or listener.is_closed():
                        self._listener = None
                        listener = await asyncpg.connect(self.dsn)
                        await listener.add_listener(self.channel, self._on_notify)
                        self._listener = listener
                        self._hinted = None  # rows may have come while no one listened
                    if self._producer is None:
                        self._producer = self._new_producer()
                    # Cleared before the pass: rows that arrive while it runs wake the relay again at once.
                    self._wake.clear()
                    hinted, self._hinted = self._hinted, set()
                    _, more = await self.publish_pass(hinted)
                    failures = 0
                    self.failing = None
                    if more:
                        continue
                    # Nothing more of ours, or only groups another relay holds: wait for new rows, or the poll
                    # (which also retries the groups of a relay that has since stopped). No busy loop.
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                    except TimeoutError:
                        self._hinted = None
                except (
                    PublishFailed,
                    KafkaException,
                    BufferError,
                    OSError,
                    TimeoutError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                ) as exc:
                    failures += 1
                    self.failures.inc()
                    if self.failing is None:
                        kind = type(exc).__name__
                        self.failing = (asyncio.get_running_loop().time(), kind, f"{kind}: {exc}"[:300])
                    delay = min(5.0, 0.2 * 2**failures)
                    log.warning(
                        "outbox relay could not publish; will retry",
                        extra={"schema": self.schema, "error_type": type(exc).__name__, "retry_in_s": delay},
                    )
                    await self._drop_producer()
                    self._hinted = None  # the failed pass's groups still have their rows
                    await asyncio.sleep(delay)
        finally:
            self._listener = None
            await self._drop_producer()
            if listener is not None and not listener.is_closed():
                await listener.close()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        buckets = [int(b) for b in payload.split(",") if b.isdigit()] if payload else []
        if not buckets:
            self._hinted = None  # a wake-up that names no bucket (an earlier release's trigger): ask
        elif self._hinted is not None:
            self._hinted.update(buckets)
        self._wake.set()

    def _new_producer(self) -> Producer:
        return Producer(
            {
                **self.kafka.librdkafka(),
                "client.id": f"xinfang-{self.schema}-outbox",
                "acks": "all",
                # Idempotent: librdkafka's own retries neither duplicate nor reorder. A batch Kafka wrote but
                # never acknowledged is still sent again by the next relay pass: at-least-once, and consumers
                # de-duplicate on event_id.
                "enable.idempotence": True,
                "linger.ms": 2,
                # While the broker is away a batch fails after this long, rolls back and waits in the outbox.
                "message.timeout.ms": 10_000,
                "partitioner": "murmur2_random",
                "logger": logging.getLogger("xinfang.outbox.librdkafka"),
            }
        )

    async def _drop_producer(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            # What it still holds belongs to a rolled-back batch: the rows are sent again from the outbox.
            with contextlib.suppress(Exception):
                producer.purge()
                await asyncio.to_thread(producer.flush, 5)

    async def publish_pass(self, hinted: set[int] | None = None) -> tuple[int, bool]:
        """One round of the lock groups that have rows, publishing one batch of each group this relay can lock;
        returns how many rows it published and whether a group filled its batch (more may be waiting). A group
        without rows costs nothing: no connection from the pool, no transaction, no lock. `hinted`: the buckets
        the notifications named (then the groups whose last batch was full are looked at too); None: ask the
        outbox which groups have rows."""
        producer = self._producer
        assert producer is not None
        first = self.next_group
        self.next_group = (first + 1) % self.shards
        if hinted is None:
            pending = await self._groups_with_rows()
        else:
            pending = {b % self.shards for b in hinted} | self._full
        self._full = set()
        sent = 0
        more = False
        if pending:
            async with self.pool.acquire() as conn:
                for i in range(self.shards):
                    group = (first + i) % self.shards
                    if group not in pending:
                        continue
                    n = await self._publish_group(conn, producer, group)
                    if n is None:  # another relay holds the group
                        continue
                    sent += n
                    if n == self.batch_size:
                        more = True
                        self._full.add(group)
        return sent, more

    async def measure(self) -> None:
        """Set the backlog gauges from the table (a scrape-time probe)."""
        row = await self.pool.fetchrow(self._measure)
        assert row is not None
        self.backlog.set(row["n"])
        self.oldest.set(float(row["age"] or 0))

    async def _groups_with_rows(self) -> set[int]:
        """The groups with rows in the outbox now, in one statement and no transaction of ours. It only says
        where to look: the rows are read again under the group's lock. A row committed after it is not missed:
        its NOTIFY wakes the relay for another pass (and the poll covers a lost one)."""
        listener = self._listener
        if listener is not None and not listener.is_closed():
            rows = await listener.fetch(self._pending, timeout=PENDING_TIMEOUT_S)
        else:
            rows = await self.pool.fetch(self._pending)
        return {r["shard"] % self.shards for r in rows}

    async def _publish_group(self, conn: asyncpg.Connection, producer: Producer, group: int) -> int | None:
        """Publish one batch of `group` in one transaction; None when another relay holds the group."""
        async with conn.transaction():
            # Only the holder of a group's lock publishes its rows (the others leave it be): two relays sending
            # neighbouring batches of a group at once could let a matter's later event overtake its earlier one.
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", self._locks[group]):
                return None
            if self.shards == 1:
                rows = await conn.fetch(self._select, self.batch_size)
            else:
                rows = await conn.fetch(self._select, self.batch_size, self._buckets[group])
            if not rows:
                return 0
            # Delivery reports arrive on flush's thread; they only record failures.
            failed: list[DeliveryError] = []

            def on_delivery(error: DeliveryError | None, _: Message) -> None:
                if error is not None:
                    failed.append(error)

            prefix = self.topic_prefix
            spans: list[Span] = []
            try:
                for r in rows:
                    headers = r["headers"]
                    if self.tracer is not None:
                        span, headers = self._send_span(prefix + r["topic"], headers)
                        spans.append(span)
                    producer.produce(
                        prefix + r["topic"],
                        value=r["value"],
                        key=r["key"],
                        headers=list(headers.items()),
                        on_delivery=on_delivery,
                    )
                # Delete only what Kafka acknowledged; any failure rolls the whole batch back to retry.
                unsent = await asyncio.to_thread(producer.flush, 60)
                if failed or unsent:
                    reason = failed[0].str() if failed else "not acknowledged in 60 s"
                    raise PublishFailed(f"{len(failed) or unsent} of {len(rows)} events: {reason}")
            except BaseException as exc:
                for span in spans:
                    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                for span in spans:
                    span.end()
            crash_point("relay.acked")  # every event acknowledged, the rows not yet deleted (crashpoints.py)
            await conn.execute(self._delete, [r["id"] for r in rows])
        self.published.inc(len(rows))
        return len(rows)

    def _send_span(self, topic: str, headers: Mapping[str, str]) -> tuple[Span, dict[str, str]]:
        """A PRODUCER span under the row's stored context, and the headers with the span's context instead."""
        assert self.tracer is not None
        span = self.tracer.start_span(
            f"send {topic}",
            context=tracing.extract(headers),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "messaging.destination.name": topic,
            },
        )
        sent = {k: v for k, v in headers.items() if k not in tracing.TRACE_HEADERS}
        return span, sent | tracing.inject(trace.set_span_in_context(span))


def bucket_of(key: bytes | None) -> int:
    """The bucket of a key, as the `shard` column computes it (shared migration 0002)."""
    return 0 if key is None else hashlib.sha256(key).digest()[0] % BUCKETS


def bucket_group(shards: int, group: int) -> list[int]:
    """The buckets of lock group `group` when the buckets are split into `shards` groups."""
    return list(range(group, BUCKETS, shards))

"""Transactional outbox: what a service publishes is written in the same transaction as its domain change,
and a relay moves it to Kafka.

`enqueue` stores the event with the current W3C trace context in its headers, so the trace continues from
the request or message that caused it even though the relay sends it later. Every instance runs a relay;
one at a time holds the schema's advisory lock and publishes, in id order, so the events of a matter reach
Kafka in the order they were written (the others take over when it stops). It sends a batch (acks=all),
waits for every acknowledgement, then deletes the rows in the same transaction. If Kafka is unreachable the
transaction rolls back and the rows wait; `LISTEN/NOTIFY` wakes the relay as soon as rows arrive, and a
slow poll covers a lost notification.

The relay's producer is librdkafka (confluent-kafka), not aiokafka: it encodes, partitions and sends in C on
its own threads, off the service's event loop, which aiokafka did in Python for every event (a fifth of
intake's CPU per submission). Its partitioner is murmur2, the Java client's and aiokafka's, so a matter_id
lands on the same partition whichever client publishes for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from confluent_kafka import KafkaError as DeliveryError
from confluent_kafka import KafkaException, Message, Producer
from opentelemetry import propagate
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel

from .db import quote_ident

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: str | None
    # The event, or its JSON already serialised (a hot path that built it from validated parts).
    event: BaseModel | bytes

    def value(self) -> bytes:
        return self.event if isinstance(self.event, bytes) else self.event.model_dump_json().encode()


def _headers() -> dict[str, str]:
    carrier: dict[str, str] = {"content-type": "application/json"}
    propagate.inject(carrier)
    return carrier


async def enqueue(conn: asyncpg.Connection, topic: str, event: BaseModel, *, key: str | None) -> None:
    """Add one event to the outbox, inside the caller's transaction."""
    await enqueue_many(conn, [Outgoing(topic, key, event)])


async def enqueue_many(conn: asyncpg.Connection, items: Sequence[Outgoing]) -> None:
    """One statement for the lot (one round trip, and one NOTIFY to the relay)."""
    if not items:
        return
    await conn.execute(
        "INSERT INTO outbox (topic, key, value, headers)"
        " SELECT topic, key, value, $4::jsonb"
        " FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS u(topic, key, value)",
        [i.topic for i in items],
        [i.key.encode() if i.key is not None else None for i in items],
        [i.value() for i in items],
        _headers(),
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
        bootstrap_servers: str,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self.pool = pool
        self.dsn = dsn
        self.schema = schema
        self.channel = f"{schema}_outbox"
        self.bootstrap_servers = bootstrap_servers
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._stopping = False
        # Since when (loop time) and why publishing keeps failing; None while it works. /health reports it: a
        # relay that cannot publish (Kafka away, a topic missing) holds back everything its service writes.
        self.failing: tuple[float, str] | None = None
        self._producer: Producer | None = None
        registry = metrics or CollectorRegistry()
        self.published = Counter("xinfang_outbox_published", "Outbox rows published to Kafka", registry=registry)
        self.failures = Counter(
            "xinfang_outbox_publish_failures", "Relay batches that failed and were retried", registry=registry
        )
        self.backlog = Gauge("xinfang_outbox_backlog", "Outbox rows not yet published", registry=registry)

    def problem(self, grace_s: float = 10.0) -> str | None:
        """Why publishing has been failing for more than `grace_s` (a blip is not a problem), or None."""
        if self.failing is None:
            return None
        since, reason = self.failing
        for_s = asyncio.get_running_loop().time() - since
        return f"failing for {for_s:.0f} s: {reason}" if for_s > grace_s else None

    async def run(self) -> None:
        """Relay until cancelled. Survives Kafka and PostgreSQL outages."""
        listener: asyncpg.Connection | None = None
        failures = 0
        try:
            while not self._stopping:
                try:
                    if listener is None or listener.is_closed():
                        listener = await asyncpg.connect(self.dsn)
                        await listener.add_listener(self.channel, self._on_notify)
                    if self._producer is None:
                        self._producer = self._new_producer()
                    sent = await self.publish_batch()
                    failures = 0
                    self.failing = None
                    if sent == self.batch_size:
                        continue
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
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
                        self.failing = (asyncio.get_running_loop().time(), f"{type(exc).__name__}: {exc}"[:300])
                    delay = min(5.0, 0.2 * 2**failures)
                    log.warning(
                        "outbox relay could not publish; will retry",
                        extra={"schema": self.schema, "error_type": type(exc).__name__, "retry_in_s": delay},
                    )
                    await self._drop_producer()
                    await asyncio.sleep(delay)
        finally:
            await self._drop_producer()
            if listener is not None and not listener.is_closed():
                await listener.close()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    def _new_producer(self) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.bootstrap_servers,
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

    async def publish_batch(self) -> int:
        """Publish up to one batch; returns how many rows were published (0 when the outbox is empty)."""
        producer = self._producer
        assert producer is not None
        table = f"{quote_ident(self.schema)}.outbox"
        async with self.pool.acquire() as conn, conn.transaction():
            # One relay per schema publishes at a time (the others stand by): two relays sending neighbouring
            # batches at once could let a matter's later event overtake its earlier one on the topic.
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", f"outbox:{self.schema}"):
                return 0
            rows = await conn.fetch(
                f"SELECT id, topic, key, value, headers FROM {table} ORDER BY id LIMIT $1 FOR UPDATE",
                self.batch_size,
            )
            if not rows:
                self.backlog.set(0)
                return 0
            # Delivery reports arrive on flush's thread; they only record failures.
            failed: list[DeliveryError] = []

            def on_delivery(error: DeliveryError | None, _: Message) -> None:
                if error is not None:
                    failed.append(error)

            for r in rows:
                producer.produce(
                    r["topic"],
                    value=r["value"],
                    key=r["key"],
                    headers=list(r["headers"].items()),
                    on_delivery=on_delivery,
                )
            # Delete only what Kafka acknowledged; any failure rolls the whole batch back to retry.
            unsent = await asyncio.to_thread(producer.flush, 60)
            if failed or unsent:
                reason = failed[0].str() if failed else "not acknowledged in 60 s"
                raise PublishFailed(f"{len(failed) or unsent} of {len(rows)} events: {reason}")
            await conn.execute(f"DELETE FROM {table} WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        self.published.inc(len(rows))
        return len(rows)

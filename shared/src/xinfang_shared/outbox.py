"""Transactional outbox: what a service publishes is written in the same transaction as its domain change,
and a relay moves it to Kafka.

`enqueue` stores the event with the current W3C trace context in its headers, so the trace continues from
the request or message that caused it even though the relay sends it later. The relay claims rows with
`FOR UPDATE SKIP LOCKED` (several instances share the work), sends them (acks=all),
waits for every acknowledgement, then deletes them in the same transaction. If Kafka is unreachable the
transaction rolls back and the rows wait; `LISTEN/NOTIFY` wakes the relay as soon as rows arrive, and a
slow poll covers a lost notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
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
    if not items:
        return
    headers = _headers()
    await conn.executemany(
        "INSERT INTO outbox (topic, key, value, headers) VALUES ($1, $2, $3, $4)",
        [
            (
                i.topic,
                i.key.encode() if i.key is not None else None,
                i.value(),
                headers,
            )
            for i in items
        ],
    )


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
        self._producer: AIOKafkaProducer | None = None
        registry = metrics or CollectorRegistry()
        self.published = Counter("xinfang_outbox_published", "Outbox rows published to Kafka", registry=registry)
        self.failures = Counter(
            "xinfang_outbox_publish_failures", "Relay batches that failed and were retried", registry=registry
        )
        self.backlog = Gauge("xinfang_outbox_backlog", "Outbox rows not yet published", registry=registry)

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
                        self._producer = await self._start_producer()
                    sent = await self.publish_batch()
                    failures = 0
                    if sent == self.batch_size:
                        continue
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                except (
                    KafkaError,
                    OSError,
                    TimeoutError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                ) as exc:
                    failures += 1
                    self.failures.inc()
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

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=f"xinfang-{self.schema}-outbox",
            acks="all",
            # Not idempotent on purpose: aiokafka's idempotent producer retries InitProducerId forever while
            # the broker is away, so a batch never fails and the relay could never roll back and wait. Without
            # it a batch expires after request_timeout_ms and the rows stay in the outbox. A batch the broker
            # wrote but never acknowledged is sent again: at-least-once, and consumers de-duplicate on event_id.
            enable_idempotence=False,
            linger_ms=2,
            request_timeout_ms=10_000,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _drop_producer(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 15)

    async def publish_batch(self) -> int:
        """Publish up to one batch; returns how many rows were published (0 when the outbox is empty)."""
        assert self._producer is not None
        table = f"{quote_ident(self.schema)}.outbox"
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT id, topic, key, value, headers FROM {table} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.batch_size,
            )
            if not rows:
                self.backlog.set(0)
                return 0
            futures = [
                await self._producer.send(
                    r["topic"],
                    value=r["value"],
                    key=r["key"],
                    headers=[(k, v.encode()) for k, v in r["headers"].items()],
                )
                for r in rows
            ]
            # Delete only what Kafka acknowledged; any failure rolls the whole batch back to retry.
            await asyncio.wait_for(asyncio.gather(*futures), 60)
            await conn.execute(f"DELETE FROM {table} WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        self.published.inc(len(rows))
        return len(rows)

"""One Kafka consumer per service: the topics a service reads, in one consumer group and one poll loop.

A service registers each thing it does with records (`Service.consume`: a name, the topics, a handler that
takes a batch of raw records) and all of them are read by one `ConsumerLoop`. Every 20 subscribers used to
be a consumer of their own, each polling, fetching, committing and logging on its own; at the bench's load
each batch held a few records. One loop gathers what all the service's topics have, splits a poll's records
by registration, runs each registration's records as one batch (its handler decides how many transactions:
`EventBatches` makes one) and commits the offsets of the poll once.

What held for each consumer holds for each registration:
  - **A bad record** is the handler's to isolate and dead-letter (`EventBatches`, `isolate`), under the
    registration's dead-letter limit (dlq_limit.py).
  - **A failure of the infrastructure** (PostgreSQL away, a deadlock) is retried, backing off, `max_attempts`
    times, then the records are sought back and read again at the next poll, until it passes: never
    dead-lettered, and the loop's other registrations go on. Any other error escaping the handler is retried
    `max_attempts` times, then its records are dead-lettered, if the limit admits it (as the broker's
    dead-letter middleware does for a subscriber); if the dead letter cannot be sent, they are read again.
  - **A halt** (the limit is reached, or was reached before): the registration's records of this poll are
    not committed, its partitions are sought back to them and paused; they are read again when the halt ends.
    The other registrations of the loop go on.
  - **Order**: a partition's records reach their handler in offset order; a poll's registrations run one
    after the other, so a matter's events on one topic are never handled twice at once.

A registration whose records must not wait behind the others (intake's channel topics, the front door) gets
a lane of its own: its own loop and fetch settings (`Lane`), still in the service's consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from opentelemetry.trace import SpanKind, Tracer, TracerProvider
from prometheus_client import CollectorRegistry, Counter, Histogram

from .dlq_limit import ConsumerHalted, DeadLetterLimit, Halts
from .kafka_auth import KafkaConnection
from .messaging import POISON_ERRORS, TRANSIENT_ERRORS, DeadLetter, RetryPolicy
from .tracing import traced_records

log = logging.getLogger(__name__)

Records = Sequence[ConsumerRecord[Any, Any]]
# Polls failing in a row (the broker away, the group coordinator gone) before /health names the loop.
FAILING_POLLS = 5
RecordsHandler = Callable[[Records], Awaitable[object]]


@dataclass(frozen=True)
class Lane:
    """A loop of its own: a name, how its fetches gather records, and how many a poll takes at most."""

    name: str
    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 500
    max_records: int = 1000


@dataclass(eq=False)
class Registration:
    consumer: str  # the dead-letter limit's name, and the halt's
    topics: frozenset[str]  # the broker's names (in the service's namespace)
    take: RecordsHandler
    limit: DeadLetterLimit


@dataclass(frozen=True)
class LoopMetrics:
    consumed: Counter
    handled_seconds: Histogram

    @classmethod
    def register(cls, registry: CollectorRegistry) -> LoopMetrics:
        return cls(
            Counter("xinfang_records_consumed", "Kafka records handed to a handler", ["topic"], registry=registry),
            Histogram(
                "xinfang_consume_batch_seconds",
                "How long one registration's records of one poll took to handle",
                ["consumer"],
                registry=registry,
            ),
        )


@dataclass
class ConsumerLoop:
    """One consumer group member reading the topics of its registrations; see the module's text."""

    lane: Lane
    kafka: KafkaConnection
    group_id: str
    client_id: str
    dead_letter: DeadLetter
    halts: Halts
    policy: RetryPolicy
    metrics: LoopMetrics
    tracer_provider: TracerProvider | None = None
    registrations: list[Registration] = field(default_factory=list)
    # The Kafka consumer while the loop runs (Halts pauses and resumes its partitions through it).
    consumer: AIOKafkaConsumer | None = None
    _by_topic: dict[str, Registration] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _running: bool = False
    _poll_failures: int = 0

    def register(self, registration: Registration) -> None:
        for topic in registration.topics:
            if topic in self._by_topic:
                raise ValueError(f"{topic} is read by {self._by_topic[topic].consumer} already")
            self._by_topic[topic] = registration
        self.registrations.append(registration)
        self.halts.add_subscriber(registration.consumer, self, topics=registration.topics)

    @property
    def topics(self) -> list[str]:
        return sorted(self._by_topic)

    async def start(self) -> None:
        if not self.registrations:
            return
        self.consumer = AIOKafkaConsumer(
            *self.topics,
            **self.kafka.aiokafka(),
            group_id=self.group_id,
            client_id=f"{self.client_id}-{self.lane.name}",
            enable_auto_commit=False,
            # A group that is new reads from the start: nothing published before the first deployment is skipped.
            auto_offset_reset="earliest",
            # What an aborted transaction wrote (a DLQ replay that crashed or was fenced: ops.py) is never read.
            isolation_level="read_committed",
            fetch_min_bytes=self.lane.fetch_min_bytes,
            fetch_max_wait_ms=self.lane.fetch_max_wait_ms,
            max_poll_records=self.lane.max_records,
        )
        await self.consumer.start()
        self._running = True
        self._task = asyncio.create_task(self._run(), name=f"consume-{self.lane.name}")

    async def stop(self, timeout_s: float = 15.0) -> None:
        """Let the poll in hand finish (its offsets committed), then leave the group."""
        self._running = False
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                log.warning("a consumer did not stop in time; cancelled", extra={"lane": self.lane.name})
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except Exception:
                log.exception("a consumer loop had failed", extra={"lane": self.lane.name})
            self._task = None
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            try:
                await asyncio.wait_for(consumer.stop(), timeout_s)
            except Exception as exc:  # the broker away: the group notices the member gone by its session timeout
                log.warning("a consumer did not leave its group cleanly", extra={"error_type": type(exc).__name__})

    def problem(self) -> str | None:
        """Why this loop is not consuming, or None: its task ended, or its polls keep failing."""
        if self._task is None or self._task.done():
            return "down"
        if self._poll_failures >= FAILING_POLLS:
            return f"polls failing ({self._poll_failures} in a row)"
        return None

    async def _run(self) -> None:
        assert self.consumer is not None
        while self._running:
            try:
                # At once with what the background fetches gathered, or after a second with nothing.
                fetched = await self.consumer.getmany(timeout_ms=1000, max_records=self.lane.max_records)
            except Exception as exc:  # the broker away, a rebalance gone wrong: the consumer reconnects by itself
                self._poll_failures += 1
                log.warning(
                    "a poll failed; polling again", extra={"lane": self.lane.name, "error_type": type(exc).__name__}
                )
                await asyncio.sleep(self.policy.delay(self._poll_failures))
                continue
            self._poll_failures = 0
            # Stopping: a poll not handled is not committed either; whoever has the partitions next reads it.
            if fetched and self._running:
                await self.handle_poll(fetched)

    async def handle_poll(self, fetched: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        """Each registration's records, then one commit of the offsets of those that were not held back."""
        assert self.consumer is not None
        parts: dict[Registration, list[tuple[TopicPartition, list[ConsumerRecord[Any, Any]]]]] = {}
        for tp, records in fetched.items():
            if records:
                parts.setdefault(self._by_topic[tp.topic], []).append((tp, records))
        done: dict[TopicPartition, int] = {}
        for registration, by_partition in parts.items():
            records = [r for _, partition_records in by_partition for r in partition_records]
            if await self._take(registration, records):
                done |= {tp: partition_records[-1].offset + 1 for tp, partition_records in by_partition}
            else:  # held back: read again at the next poll, or once the halt ends
                for tp, partition_records in by_partition:
                    with contextlib.suppress(Exception):  # revoked meanwhile: its next owner reads them
                        self.consumer.seek(tp, partition_records[0].offset)
                if registration.limit.halted:
                    self.halts.pause(registration.consumer)
        # Only what this member still holds: one partition a rebalance took would fail the whole commit.
        assigned = self.consumer.assignment()
        done = {tp: offset for tp, offset in done.items() if tp in assigned}
        if done:
            try:
                await self.consumer.commit(done)
            except Exception as exc:  # a rebalance took partitions meanwhile: their records come again (idempotent)
                log.warning("could not commit the offsets of a poll", extra={"error_type": type(exc).__name__})

    async def _take(self, registration: Registration, records: list[ConsumerRecord[Any, Any]]) -> bool:
        """Whether the records were handled (or dead-lettered); False holds them back: sought back, read again at
        the next poll (paused first if the registration halted). An outage is retried `max_attempts` times here,
        then held back, so the other registrations of the loop go on and the member keeps polling (a member that
        stops polling for max.poll.interval.ms is put out of its group)."""
        limit = registration.limit
        if limit.halted:
            return False
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                # The batch's span (its SQL under it), and a span per record in the record's own trace.
                with self._span(registration, records), traced_records(self._tracer, records, self.group_id):
                    await registration.take(records)
            except ConsumerHalted:
                return False
            except POISON_ERRORS as exc:
                error: BaseException = exc
                break
            except Exception as exc:
                if attempt >= self.policy.max_attempts and not isinstance(exc, TRANSIENT_ERRORS):
                    error = exc
                    break
                if not self._running or attempt >= self.policy.max_attempts:
                    # Stopping (whoever has the partitions next reads them), or an outage: held back.
                    return False
                self.dead_letter.retried.labels(records[0].topic).inc()
                log.info(
                    "handler failed, retrying",
                    extra={"consumer": registration.consumer, "attempt": attempt, "error_type": type(exc).__name__},
                )
                await asyncio.sleep(self.policy.delay(attempt))
            else:
                self._count(registration, records, started)
                return True
        # An error no handler caught, and not the infrastructure's: the records are dead-lettered, if the limit
        # admits it, as the dead-letter middleware does for a subscriber.
        if not limit.admit([True] * len(records), error):
            return False
        try:
            await self.dead_letter.send(tuple(records), error, attempt)
        except Exception:
            log.exception("could not dead-letter; the records will be read again")
            await asyncio.sleep(self.policy.backoff_max_s)
            return False
        self._count(registration, records, started)
        return True

    def _count(self, registration: Registration, records: list[ConsumerRecord[Any, Any]], started: float) -> None:
        self.metrics.handled_seconds.labels(registration.consumer).observe(time.perf_counter() - started)
        topics: dict[str, int] = {}
        for record in records:
            topics[record.topic] = topics.get(record.topic, 0) + 1
        for topic, count in topics.items():
            self.metrics.consumed.labels(topic).inc(count)

    @property
    def _tracer(self) -> Tracer | None:
        return None if self.tracer_provider is None else self.tracer_provider.get_tracer(__name__)

    def _span(self, registration: Registration, records: list[ConsumerRecord[Any, Any]]) -> Any:
        tracer = self._tracer
        if tracer is None:
            return contextlib.nullcontext()
        return tracer.start_as_current_span(
            f"{registration.consumer} batch",
            kind=SpanKind.INTERNAL,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.consumer.group.name": self.group_id,
                "messaging.destination.name": ",".join(sorted({r.topic for r in records})),
                "messaging.batch.message_count": len(records),
            },
        )

"""Routing figures: matters.registered.v2 events produced by the bench → the matters.routed.v1 events the
routing instances under test publish for them (one per matter, key = matter_id).

What the routing under test dead-letters instead (matters.registered.v2.dlq, its group in the headers) is
counted too, so a batch lost to the DLQ ends the wait instead of running into the timeout: the topics are
shared, and a duplicated record someone else publishes there can make routing dead-letter a whole batch."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests import factories
from xinfang_shared.contracts.events import utc_now
from xinfang_shared.contracts.reference import Category
from xinfang_shared.contracts.topics import MATTERS_REGISTERED_V2, MATTERS_ROUTED
from xinfang_shared.tracking import new_tracking_code

from .common import Payload, topic
from .kafka_bench import RoundTrip, _partitions, _wait, produce

REGISTERED_TOPIC = topic(MATTERS_REGISTERED_V2.name)
ROUTED_TOPIC = topic(MATTERS_ROUTED.name)
DLQ_TOPIC = topic(MATTERS_REGISTERED_V2.dlq)

# matter_id → {routed_at of a matters.routed.v1 event about it → when that event was first seen}
RoutedArrivals = dict[str, dict[datetime, float]]


@dataclass(frozen=True)
class RoutingTrip(RoundTrip):
    dead_lettered: int = 0  # bench matters the routing under test sent to the DLQ instead
    dead_errors: Counter[str] = field(default_factory=Counter)  # their x-dlq-error (first line), counted

    @property
    def rate(self) -> float:
        """Matters routed per second (all of them, unless some were dead-lettered)."""
        return self.arrived / self.total_s if self.total_s else 0.0


def registered_events(n: int, seed: int) -> list[Payload]:
    """`n` matters.registered.v2 events as intake would publish them (sealed), serialised once
    (Payload.external_id holds the record key, the matter_id). Every other one has no category, so routing
    infers it (jieba); the others carry one at random."""
    rng = random.Random(seed)
    categories = list(Category)
    now = utc_now()
    out: list[Payload] = []
    for i in range(n):
        body = factories.submission(rng)
        body["category"] = None if i % 2 == 0 else rng.choice(categories).value
        event = factories.registration(body, tracking_code=new_tracking_code(), registered_at=now)
        out.append(Payload(str(event.matter_id), event.model_dump_json().encode()))
    return out


async def _collect(
    consumer: AIOKafkaConsumer, group_id: str, wanted: set[bytes], arrivals: RoutedArrivals, dead: dict[str, str]
) -> None:
    """Note when each matters.routed.v1 event about a wanted matter (by key) is first seen, and which wanted
    matters the group under test dead-lettered (with the error), until cancelled."""
    while True:
        batches = await consumer.getmany(timeout_ms=100, max_records=5000)
        now = time.perf_counter()
        for tp, records in batches.items():
            for record in records:
                if record.key not in wanted:
                    continue
                if tp.topic == ROUTED_TOPIC:
                    routed_at = datetime.fromisoformat(orjson.loads(record.value or b"{}")["routed_at"])
                    arrivals.setdefault(record.key.decode(), {}).setdefault(routed_at, now)
                    continue
                headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
                if headers.get("x-dlq-consumer-group") == group_id:
                    dead[record.key.decode()] = headers.get("x-dlq-error", "?").splitlines()[0][:200]


async def routing_roundtrip(
    bootstrap: str,
    group_id: str,
    events: list[Payload],
    routed_by_bench: Callable[[list[str]], Awaitable[dict[str, datetime]]],
    alive: Callable[[], None],
    timeout_s: float,
) -> RoutingTrip:
    """Produce the events to matters.registered.v2; done when every matter's matters.routed.v1 event from the
    routing under test has been seen. Any other routing consuming the topic (a `make up` stack, another
    session's tests) routes the same matters and publishes events with the same keys: the ones of the routing
    under test are told apart by routed_at, which equals transferred_at in the bench database
    (`routed_by_bench`: matter_id → transferred_at of the matters routed there). Matters the group under test
    (`group_id`) dead-letters are not waited for; the rate is then over the ones routed."""
    wanted = {e.external_id.encode() for e in events}
    ids = {e.external_id for e in events}
    arrivals: RoutedArrivals = {}
    dead: dict[str, str] = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    collecting: asyncio.Task[None] | None = None
    try:
        partitions = [
            TopicPartition(topic, p) for topic in (ROUTED_TOPIC, DLQ_TOPIC) for p in await _partitions(bootstrap, topic)
        ]
        consumer.assign(partitions)
        for tp, offset in (await consumer.end_offsets(partitions)).items():
            consumer.seek(tp, offset)
        collecting = asyncio.create_task(_collect(consumer, group_id, wanted, arrivals, dead))
        started, acked = await produce(bootstrap, REGISTERED_TOPIC, events)
        ours: dict[str, datetime] = {}

        async def done() -> float | None:
            if len(arrivals.keys() | dead.keys()) < len(wanted):
                return None
            pending = ids - ours.keys() - dead.keys()
            if pending:
                ours.update(await routed_by_bench(sorted(pending)))
            if len(ours.keys() | dead.keys()) < len(wanted):
                return None
            if any(at not in arrivals.get(m, {}) for m, at in ours.items()):
                return None
            return max((arrivals[m][at] for m, at in ours.items()), default=time.perf_counter())

        finished = await _wait(done, timeout_s=timeout_s, alive=alive)
        if finished is None:  # for the report: how many the routing under test did route and publish
            ours.update(await routed_by_bench(sorted(ids - ours.keys())))
        arrived = sum(1 for m, at in ours.items() if at in arrivals.get(m, {}))
    finally:
        if collecting is not None:
            collecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collecting
        await consumer.stop()
    return RoutingTrip(
        len(events),
        acked - started,
        finished - started if finished else None,
        arrived,
        dead_lettered=len(dead.keys() - ours.keys()),
        dead_errors=Counter(error for m, error in dead.items() if m not in ours),
    )

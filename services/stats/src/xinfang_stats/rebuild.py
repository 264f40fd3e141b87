"""`xinfang-stats rebuild`: the statistics again from the event topics, from their beginning, into fresh tables.

Every topic stats folds is read from its first record to its end as of the start (partitions assigned, no
consumer group: the live consumers are not disturbed), in the order of `fold.FOLDS`, through the very folds the
live service runs (order-independent, so reading topic after topic gives the same rows). Then the surge watch
checks every minute the data covers (up to `surge_catch_up_days`), as live: alert ids derive from the series
and the minute, so the alerts are the live ones (for every matter live stats folded within the straggler wait).
Nothing is published: live stats published those alerts already.

By default it builds `<schema>_rebuild` (dropped first), beside the live schema, to compare or to inspect;
`--schema` names another; `--since` starts at a time instead of the beginning. A record that does not parse,
or that a fold refuses, is skipped and counted (the live consumer dead-lettered it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from xinfang_shared.batching import isolate
from xinfang_shared.contracts.events import Event, MatterRouted, utc_now
from xinfang_shared.contracts.topics import MATTERS_REGISTERED, MATTERS_REGISTERED_V2, MATTERS_ROUTED
from xinfang_shared.db import create_pool, migrate, migration_files, quote_ident

from . import fold
from .app import MIGRATIONS
from .report_facts import keep_supervision
from .settings import StatsSettings
from .watch import Round, SurgeWatch, mark_folded


@dataclass
class Rebuilt:
    schema: str
    records: dict[str, int] = field(default_factory=dict)  # per topic
    skipped: dict[str, int] = field(default_factory=dict)
    surges: Round | None = None
    seconds: float = 0.0


class Progress:
    """One line per topic: records read of the topic's records, and the rate; redrawn in place on a terminal."""

    def __init__(self, out: TextIO, topic: str, total: int) -> None:
        self.out, self.topic, self.total = out, topic, total
        self.done = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self.tty = out.isatty()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._drawn >= (0.2 if self.tty else 5.0) or self.done >= self.total:
            self._drawn = now
            self.draw(end="\n" if self.done >= self.total else "")

    def draw(self, end: str = "") -> None:
        width = 30
        share = self.done / self.total if self.total else 1.0
        bar = "#" * int(width * share) + "-" * (width - int(width * share))
        rate = self.done / max(time.monotonic() - self.started, 1e-9)
        line = f"{self.topic:<24} [{bar}] {self.done:>9,}/{self.total:,} {rate:>8,.0f}/s"
        self.out.write(("\r" if self.tty else "") + line + (end if self.tty else "\n"))
        self.out.flush()


async def _parts(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer._client.force_metadata_update()
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def _ends(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """Every partition's end now: what the rebuild reads up to (one moment for all topics, so that no routing is
    read of a matter whose registration was not)."""
    partitions = [tp for topic in topics for tp in await _parts(consumer, topic)]
    return dict(await consumer.end_offsets(partitions)) if partitions else {}


async def _read_topic(
    consumer: AIOKafkaConsumer,
    topic: str,
    ends: dict[TopicPartition, int],
    out: TextIO,
    batch_size: int,
    since: datetime | None,
) -> AsyncIterator[list[ConsumerRecord[Any, Any]]]:
    partitions = [tp for tp in ends if tp.topic == topic]
    if not partitions:
        return
    consumer.assign(partitions)
    starts = await consumer.beginning_offsets(partitions)
    if since is not None:  # the first record at or after `since`, by the records' timestamps
        found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
        starts = {tp: ends[tp] if found[tp] is None else max(starts[tp], found[tp].offset) for tp in partitions}
    for tp in partitions:
        consumer.seek(tp, starts[tp])
    progress = Progress(out, topic, sum(ends[tp] - starts[tp] for tp in partitions))
    if progress.total == 0:
        progress.draw(end="\n")
        return
    left = {tp for tp in partitions if ends[tp] > starts[tp]}
    while left:
        fetched = await consumer.getmany(*left, timeout_ms=500, max_records=batch_size)
        batch: list[ConsumerRecord[Any, Any]] = []
        for tp, records in fetched.items():
            batch.extend(r for r in records if r.offset < ends[tp])
            if records and records[-1].offset >= ends[tp] - 1:
                left.discard(tp)
        for tp in list(left):  # a partition whose end is a transaction marker or a compacted gap
            if await consumer.position(tp) >= ends[tp]:
                left.discard(tp)
        if batch:
            progress.advance(len(batch))
            yield batch


async def _fold_batch(
    pool: asyncpg.Pool, topic: str, model: type[Event], apply: fold.Fold, records: Sequence[ConsumerRecord[Any, Any]]
) -> int:
    """Fold what parses and what the folds accept; returns how many records were skipped."""
    events: list[Event] = []
    for record in records:
        try:
            events.append(model.model_validate_json(record.value or b""))
        except ValidationError:
            continue

    async def attempt(part: Sequence[Event]) -> int:
        return await fold.fold_events(pool, topic, apply, part)

    isolated = await isolate(events, attempt, what=f"rebuild {topic}")
    # The reports' supervision orders and escalations, kept from the same deadline events as live (report_facts).
    await keep_supervision(pool, events)
    return len(records) - len(events) + len(isolated.failed)


async def rebuild(
    settings: StatsSettings,
    schema: str,
    *,
    since: datetime | None = None,
    out: TextIO = sys.stderr,
    batch_size: int = 2000,
) -> Rebuilt:
    """Build `schema` afresh from the topics (from `since`, by record time, or from their beginning)."""
    if schema == settings.db_schema:
        raise ValueError(f"{schema} is the live schema; rebuild into another one")
    started = time.monotonic()
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await migrate(conn, schema, migration_files(MIGRATIONS))
    finally:
        await conn.close()
    pool = await create_pool(settings.database_url, schema, min_size=1, max_size=2)
    consumer = AIOKafkaConsumer(**settings.kafka.aiokafka(), group_id=None, enable_auto_commit=False)
    result = Rebuilt(schema)
    await consumer.start()
    try:
        snapshot_at = utc_now()
        # The registrations an earlier release published on the retired v1 come first (registrations.py), and
        # the routings, which an earlier release's status changes did not carry (the live service reads them
        # from the changes, and folding one twice changes nothing).
        folds: tuple[tuple[str, type[Event], fold.Fold], ...] = (
            (MATTERS_REGISTERED.name, fold.Registered, fold.registered),
            (MATTERS_ROUTED.name, MatterRouted, fold.routed),
            *fold.FOLDS,
        )
        ends = await _ends(consumer, [settings.topic(topic) for topic, _, _ in folds])
        for topic, model, apply in folds:
            result.records[topic], result.skipped[topic] = 0, 0
            async for batch in _read_topic(consumer, settings.topic(topic), ends, out, batch_size, since):
                result.skipped[topic] += await _fold_batch(pool, topic, model, apply, batch)
                result.records[topic] += len(batch)
                if topic == MATTERS_REGISTERED_V2.name:
                    await mark_folded(pool, batch)
        # Everything up to the snapshot is folded: the watch sees the topic as it was then.
        snapshot = {
            tp.partition: (0, end) for tp, end in ends.items() if tp.topic == settings.topic(MATTERS_REGISTERED_V2.name)
        }
        watch = SurgeWatch(settings, pool, metrics=None)
        result.surges = await watch.round(snapshot_at, extent=snapshot)
        await pool.execute("DELETE FROM outbox")  # the live service published these alerts
    finally:
        await consumer.stop()
        await pool.close()
    result.seconds = time.monotonic() - started
    return result


def main(argv: Sequence[str]) -> None:
    from xinfang_shared.logging import configure_logging

    settings = StatsSettings()
    parser = argparse.ArgumentParser(prog="xinfang-stats rebuild", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--schema", default=f"{settings.db_schema}_rebuild", help="where to build (dropped first)")
    parser.add_argument(
        "--since",
        type=datetime.fromisoformat,
        help="only records from this time on (ISO 8601 with an offset), e.g. after a retention change",
    )
    args = parser.parse_args(argv)
    if args.since is not None and args.since.tzinfo is None:
        parser.error("--since needs a time zone offset, e.g. 2026-12-01T00:00:00+08:00")
    configure_logging(settings.service_name, "WARNING", settings.log_format)
    done = asyncio.run(rebuild(settings, args.schema, since=args.since))
    skipped = sum(done.skipped.values())
    alerts = done.surges
    sys.stdout.write(
        f"rebuilt {done.schema}: {sum(done.records.values()):,} records in {done.seconds:.1f} s"
        f" ({skipped} skipped); surge alerts opened {alerts.opened if alerts else 0},"
        f" closed {alerts.closed if alerts else 0}\n"
    )

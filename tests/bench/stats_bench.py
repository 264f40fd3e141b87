"""Stats (`make bench` / `python -m tests.bench --only stats`): events folded per second, and the summary's
latency over a million fact rows.

Folding: `xinfang-stats` (a process of its own on a fresh database and consumer group started at the topics'
ends) consumes N matters' registered and routing status events (2N events: the status change a matter is routed
by carries its office and category; produced to the real topics as fast as the producer goes); timed from the
first send to the moment its database shows every event folded (N complete fact rows: stats keeps no inbox for
these topics, its folds are idempotent by the row's state). Beside it, in the same run and on the same database server:
  - the folds alone, in this process: the same events through `fold.fold_events` in batches of 1,000 (what
    the consumer does per batch, without Kafka and without parsing);
  - the baseline: a plain `INSERT … ON CONFLICT` of the same rows (one executemany per 1,000 events into a
    table like `facts`, no inbox, no hourly counts): the cheapest write of what the folds write.

Summary latency: 1,000,000 fact rows over a year (COPY, then ANALYZE), then `figures.summary` for each
dimension over 30 days and over the year, the median of 5 runs each; the baseline is `count(*)` of the same
period's rows (the cheapest read of them).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from tests.integration.processes import free_port
from xinfang_shared.contracts.events import (
    Location,
    MatterStatus,
    MatterStatusChanged,
)
from xinfang_shared.contracts.reference import CITIES, Category, Channel, Kind, Office
from xinfang_shared.contracts.topics import MATTERS_REGISTERED_V2, MATTERS_STATUS
from xinfang_shared.db import create_pool, migrate_dsn
from xinfang_stats import figures, fold
from xinfang_stats.app import MIGRATIONS
from xinfang_stats.fold import Registered

from .common import ROOT, Figure
from .common import topic as namespaced
from .service import ServiceProcess, start_group_at_end

REGIONS = [unit.removeprefix("city-") + "01" for unit in CITIES]
BATCH = 1000


def _events(n: int, seed: int) -> list[tuple[str, Any]]:
    """N matters' registered and status (transferred, carrying the routing) events, in that order per matter."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=3)
    registered, status = [], []
    for i in range(n):
        matter_id, at = uuid.uuid4(), start + timedelta(seconds=i * 5)
        region = rng.choice(REGIONS)
        category = rng.choice(list(Category))
        unit = f"city-{region[:4]}"
        registered.append(
            Registered(
                matter_id=matter_id,
                channel=rng.choice(list(Channel)),
                registered_at=at,
                kind=Kind.COMPLAINT,
                headcount=1,
                location=Location(region_code=region),
                category=category if i % 2 else None,
                title="关于拖欠农民工工资的反映",
                content="某建筑公司拖欠农民工工资三个月，多次讨要无果，请求督促支付。",
            )
        )
        status.append(
            MatterStatusChanged(
                matter_id=matter_id,
                status=MatterStatus.TRANSFERRED,
                previous_status=None,
                unit=unit,
                at=at + timedelta(seconds=1),
                action="routed",
                office=Office.LETTERS_2,
                category=category,
                rule="bench",
            )
        )
    return [(MATTERS_REGISTERED_V2.name, e) for e in registered] + [(MATTERS_STATUS.name, e) for e in status]


async def _through_the_service(db_dsn: str, bootstrap: str, workdir: Path, events: list[tuple[str, Any]]) -> float:
    run = uuid.uuid4().hex[:8]
    home = workdir / f"stats-{run}"
    home.mkdir(parents=True, exist_ok=True)
    group = f"bench-stats-{run}"
    stats = ServiceProcess(
        name="stats",
        binary=ROOT / ".venv/bin/xinfang-stats",
        dsn=db_dsn,
        port=free_port(),
        group_id=group,
        bootstrap=bootstrap,
        log_path=home / "stats.log",
    )
    stats.migrate()
    await start_group_at_end(bootstrap, group, [namespaced(t) for t, _, _ in fold.FOLDS])
    stats.start()
    pool = await create_pool(db_dsn, "stats", min_size=1, max_size=2)
    try:
        await stats.wait_healthy()
        await asyncio.sleep(3)  # the consumers join their groups
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256_000)
        await producer.start()
        started = time.perf_counter()
        try:
            for topic, event in events:
                value, key = event.model_dump_json().encode(), str(event.matter_id).encode()
                await producer.send(namespaced(topic), value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        wanted = len(events)
        matters = list({event.matter_id for _, event in events})
        complete = (
            "SELECT count(*) FROM facts WHERE matter_id = ANY($1::uuid[]) AND unit IS NOT NULL AND office IS NOT NULL"
            " AND category IS NOT NULL AND registered_at IS NOT NULL AND status = 'transferred'"
        )
        while await pool.fetchval(complete, matters) < len(matters):
            stats.check_alive()
            await asyncio.sleep(0.2)
        seconds = time.perf_counter() - started
        return wanted / seconds
    finally:
        await pool.close()
        stats.stop()


async def _folds_alone(db_dsn: str, events: list[tuple[str, Any]]) -> float:
    await migrate_dsn(db_dsn, "stats_folds", MIGRATIONS)
    pool = await create_pool(db_dsn, "stats_folds", min_size=1, max_size=2)
    folds = {topic: apply for topic, _, apply in fold.FOLDS}
    try:
        started = time.perf_counter()
        for i in range(0, len(events), BATCH):
            part = events[i : i + BATCH]
            for topic in dict.fromkeys(t for t, _ in part):  # a batch is of one topic, as a consumer's is
                await fold.fold_events(pool, topic, folds[topic], [e for t, e in part if t == topic])
        return len(events) / (time.perf_counter() - started)
    finally:
        await pool.close()


PLAIN = {
    MATTERS_REGISTERED_V2.name: (
        "INSERT INTO facts (matter_id, registered_at, day, channel, kind, region, headcount, category)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (matter_id) DO UPDATE SET"
        " registered_at = EXCLUDED.registered_at, day = EXCLUDED.day, channel = EXCLUDED.channel",
        lambda e: (
            e.matter_id,
            e.registered_at,
            e.registered_at.date(),
            e.channel.value,
            e.kind.value,
            e.location.region_code[:4],
            e.headcount,
            e.category.value if e.category else None,
        ),
    ),
    MATTERS_STATUS.name: (
        "INSERT INTO facts (matter_id, status, status_at, transferred_at, office, category, routed_at, unit)"
        " VALUES ($1, $2, $3, $3, $4, $5, $3, $6) ON CONFLICT (matter_id) DO UPDATE SET status = EXCLUDED.status,"
        " status_at = EXCLUDED.status_at, transferred_at = EXCLUDED.transferred_at, office = EXCLUDED.office,"
        " category = EXCLUDED.category, routed_at = EXCLUDED.routed_at, unit = EXCLUDED.unit",
        lambda e: (e.matter_id, e.status.value, e.at, e.office.value, e.category.value, e.unit),
    ),
}


async def _plain_upserts(db_dsn: str, events: list[tuple[str, Any]]) -> float:
    await migrate_dsn(db_dsn, "stats_plain", MIGRATIONS)
    pool = await create_pool(db_dsn, "stats_plain", min_size=1, max_size=2)
    try:
        started = time.perf_counter()
        for i in range(0, len(events), BATCH):
            part = events[i : i + BATCH]
            async with pool.acquire() as conn, conn.transaction():
                for topic in dict.fromkeys(t for t, _ in part):
                    query, row = PLAIN[topic]
                    await conn.executemany(query, [row(e) for t, e in part if t == topic])
        return len(events) / (time.perf_counter() - started)
    finally:
        await pool.close()


def _fact_rows(n: int, seed: int, first_day: date) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    channels, categories = [c.value for c in Channel], [c.value for c in Category]
    offices, regions = [o.value for o in Office], [r[:4] for r in REGIONS]
    rows = []
    for _ in range(n):
        day = first_day + timedelta(days=rng.randrange(365))
        registered = datetime(day.year, day.month, day.day, rng.randrange(24), tzinfo=UTC)
        region = rng.choice(regions)
        concluded = registered + timedelta(days=rng.uniform(1, 80)) if rng.random() < 0.4 else None
        rows.append(
            (
                uuid.uuid4(),
                registered,
                day,
                rng.choice(channels),
                "complaint",
                region,
                rng.choice(offices),
                f"city-{region}",
                rng.choice(categories),
                registered + timedelta(minutes=5),
                registered + timedelta(days=2) if rng.random() < 0.8 else None,
                concluded,
                rng.random() < 0.1,
                rng.choice(["satisfied", "unsatisfied", None, None, None]),
            )
        )
    return rows


async def _summary_latency(db_dsn: str, n_facts: int) -> tuple[list[Figure], list[str]]:
    await migrate_dsn(db_dsn, "stats_summary", MIGRATIONS)
    pool = await create_pool(db_dsn, "stats_summary", min_size=1, max_size=2)
    today = datetime.now(UTC).date()
    first = today - timedelta(days=364)
    columns = [
        "matter_id", "registered_at", "day", "channel", "kind", "region", "office", "unit", "category",
        "routed_at", "accepted_at", "concluded_at", "overdue", "rating",
    ]  # fmt: skip
    try:
        async with pool.acquire() as conn:
            for i in range(0, n_facts, 100_000):
                rows = _fact_rows(min(100_000, n_facts - i), i, first)
                await conn.copy_records_to_table("facts", records=rows, columns=columns)
            await conn.execute("UPDATE facts SET transferred_at = routed_at")
            await conn.execute("VACUUM ANALYZE facts")
        found: list[Figure] = []
        for label, period in (("30 days", figures.Period(today - timedelta(days=29), today)), ("a year", None)):
            period = period or figures.Period(first, today)
            cheapest = await _median_ms(
                lambda p=period: pool.fetchval("SELECT count(*) FROM facts WHERE day BETWEEN $1 AND $2", p.start, p.end)
            )
            for group_by in ("channel", "office", "unit", "category", "region"):
                ms = await _median_ms(lambda g=group_by, p=period: figures.summary(pool, g, p))  # type: ignore[misc]
                found.append(
                    Figure(
                        f"summary by {group_by} over {label} ({n_facts:,} facts)",
                        ms,
                        "ms",
                        ms / cheapest if cheapest else None,
                        note=f"baseline count(*) of the period's rows {cheapest:.1f} ms",
                    )
                )
        return found, []
    finally:
        await pool.close()


async def _median_ms(query: Any, runs: int = 5) -> float:
    await query()  # warm the cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await query()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def measure(
    db_dsn: str, bootstrap: str, workdir: Path, n_matters: int, n_facts: int, seed: int
) -> tuple[list[Figure], list[str]]:
    events = _events(n_matters, seed)
    plain = await _plain_upserts(db_dsn, events)
    alone = await _folds_alone(db_dsn, events)
    service = await _through_the_service(db_dsn, bootstrap, workdir, events)
    latency, notes = await _summary_latency(db_dsn, n_facts)
    fold_figures = [
        Figure("stats events folded/s, the service through Kafka", service, "events/s", service / plain),
        Figure("stats events folded/s, the folds alone (no Kafka)", alone, "events/s", alone / plain),
        Figure("plain INSERT … ON CONFLICT of the same rows", plain, "events/s"),
    ]
    notes.append(f"stats: {n_matters:,} matters, {len(events):,} events (registered, status carrying the routing)")
    return fold_figures + latency, notes

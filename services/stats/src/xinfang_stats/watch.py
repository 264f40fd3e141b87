"""The surge watch: every minute (event time), every city and every category is checked over its trailing
windows (PT15M and PT1H) against its own hourly baseline (surge.py, the sliding detector); an alert that opens
or closes is stored and published on stats.alerts.v1 in one transaction.

Time is event time, not the wall clock, so a replay, a consumer catching up on a backlog, or a month of
generated data is checked exactly as it would have been live. Stats records, per partition of
matters.registered.v2, the last offset it folded and the latest registration in it (`mark_folded`, after the
fold commits). Each round asks Kafka for the partitions' ends: while some partition is behind, the watermark is
the earliest latest-registration among those behind (what comes next in them is later still); when stats has
folded everything, it is now. A window ending at T is checked once the watermark is `surge_lateness_s` (20 s)
past T: the bounded wait for stragglers (routing's category, which comes a little after the registration, and
a registration published a moment after a later one). A matter later than that is still counted by every later
window that holds it, but not by the windows already judged (a replay would count it there: replay equals live
for what arrives within the bound). A partition never read yet holds everything; so does a halted registration
consumer (minutes without their matters would look calm); so does Kafka away.

The observed counts come from the facts (registered_at to the minute, repeats left out: what `hourly` counts),
the baselines from `hourly`; both are folded in the same transactions.

Several instances run the watch; each round takes a transaction-level advisory lock, so one checks at a time,
and the series' states (surge_series) carry each one's last checked minute and its CUSUM, so nothing is checked
twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge

from xinfang_shared import outbox
from xinfang_shared.contracts.events import StatsAlert, utc_now
from xinfang_shared.contracts.reference import Category
from xinfang_shared.contracts.topics import MATTERS_REGISTERED_V2, STATS_ALERTS
from xinfang_shared.kafka_auth import KafkaConnection
from xinfang_shared.workdays import WorkingCalendar

from .settings import StatsSettings
from .surge import (
    HOUR,
    MINUTE,
    HourlyCounts,
    MinuteCounts,
    Series,
    SlidingDecision,
    SlidingDetector,
    SlidingState,
    beijing_hour,
    beijing_minute,
)

log = logging.getLogger(__name__)
REGISTERED = MATTERS_REGISTERED_V2.name
CONSUMER = f"{REGISTERED}:stats"


async def mark_folded(pool: asyncpg.Pool, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
    """Record, per partition, the last offset of `records` (folded or dead-lettered: handled) and the latest
    `registered_at` among them. Called once the batch is folded, so a watermark never passes a matter that is
    not counted yet."""
    offsets: dict[int, int] = {}
    latest: dict[int, datetime] = {}
    for record in records:
        offsets[record.partition] = max(record.offset, offsets.get(record.partition, -1))
        try:
            at = datetime.fromisoformat(json.loads(record.value or b"")["registered_at"])
        except (ValueError, KeyError, TypeError):
            continue  # an unreadable record went to the DLQ; it tells no time
        if at.tzinfo is not None and (record.partition not in latest or at > latest[record.partition]):
            latest[record.partition] = at
    await pool.executemany(
        "INSERT INTO watermarks (topic, partition, folded_offset, event_time) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (topic, partition) DO UPDATE SET"
        " folded_offset = GREATEST(watermarks.folded_offset, EXCLUDED.folded_offset),"
        " event_time = GREATEST(watermarks.event_time, EXCLUDED.event_time)",
        [(REGISTERED, p, offset, latest.get(p)) for p, offset in offsets.items()],
    )


Counts = dict[str, dict[datetime, int]]  # series -> hour or minute -> matters
Extent = dict[int, tuple[int, int]]  # partition -> (first offset, end offset)


async def watermark(conn: asyncpg.Connection, extent: Extent, now: datetime) -> datetime | None:
    """How far in event time every registration is folded (see the module docstring); None: not known yet."""
    rows = {
        r["partition"]: r
        for r in await conn.fetch(
            "SELECT partition, folded_offset, event_time FROM watermarks WHERE topic = $1", REGISTERED
        )
    }
    behind: list[datetime] = []
    for partition, (first, end) in extent.items():
        row = rows.get(partition)
        if end <= first or (row is not None and row["folded_offset"] >= end - 1):
            continue  # empty, or folded to its end
        if row is None or row["event_time"] is None:
            return None  # not read yet: it may hold any hour
        behind.append(row["event_time"])
    return min(behind) if behind else now


def last_due(mark: datetime, now: datetime, lateness_s: float) -> datetime:
    """The last window end that may be judged: the watermark (never past now) less the wait for stragglers,
    down to its minute. A window's matters are all waited for until then, none after."""
    return beijing_minute(min(mark, now) - timedelta(seconds=lateness_s))


class Registrations:
    """The partitions of matters.registered.v2 and their offsets, from Kafka (a consumer outside any group)."""

    def __init__(self, kafka: KafkaConnection, topic: str = REGISTERED) -> None:
        self._consumer = AIOKafkaConsumer(**kafka.aiokafka(), group_id=None, enable_auto_commit=False)
        self._started = False
        self.topic = topic  # the broker's name (in the service's namespace)

    async def extent(self) -> Extent:
        if not self._started:
            await self._consumer.start()
            self._started = True
        await self._consumer._client.force_metadata_update()
        partitions = [TopicPartition(self.topic, p) for p in self._consumer.partitions_for_topic(self.topic) or ()]
        if not partitions:
            raise RuntimeError(f"{self.topic} has no partitions (is the topic created?)")
        firsts = await self._consumer.beginning_offsets(partitions)
        ends = await self._consumer.end_offsets(partitions)
        return {tp.partition: (firsts[tp], ends[tp]) for tp in partitions}

    async def close(self) -> None:
        if self._started:
            await self._consumer.stop()


@dataclass(frozen=True)
class Round:
    """What one round of the watch did."""

    checked_to: datetime | None  # the last window end checked, None when nothing was due
    series: int
    opened: int
    closed: int


def _series_of(kind: str, key: str) -> Series | None:
    try:
        return Series(kind, key)  # type: ignore[arg-type]
    except ValueError:
        return None  # e.g. a region code that is no city prefix: nothing to watch


def alert_event(decision: SlidingDecision) -> StatsAlert:
    series = decision.series
    state = "open" if decision.action == "open" else "closed"
    return StatsAlert(
        event_id=uuid.uuid5(decision.alert_id, state),  # a replayed decision is the same event
        alert_id=decision.alert_id,
        state=state,
        method=decision.method,
        region_code=series.key if series.kind == "region" else None,
        category=Category(series.key) if series.kind == "category" else None,
        window=decision.window,
        observed=decision.observed,
        baseline=round(decision.baseline, 3),
        at=decision.at,
    )


class SurgeWatch:
    def __init__(self, settings: StatsSettings, pool: asyncpg.Pool, metrics: CollectorRegistry | None) -> None:
        self.settings = settings
        self.pool = pool
        self.registrations = Registrations(settings.kafka, settings.topic(REGISTERED))
        calendar = WorkingCalendar.default()
        self.detector = SlidingDetector(calendar.is_holiday, is_working_day=calendar.is_working_day)
        self._stopping = asyncio.Event()
        self.checks = Counter("stats_surge_checks", "Series-minutes checked for surges", registry=metrics)
        self.alerts = Counter("stats_surge_alerts", "Surge alerts opened and closed", ["state"], registry=metrics)
        self.behind = Gauge(
            "stats_surge_behind_seconds", "Wall time minus the last window end checked", registry=metrics
        )

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    await self.round()
                except (OSError, asyncpg.PostgresError, KafkaError) as error:
                    log.warning(
                        "surge watch: a dependency is away, trying again", extra={"error": type(error).__name__}
                    )
                except Exception:
                    log.exception("surge watch: a round failed")  # the next round tries again from the same states
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.settings.surge_check_s)
        finally:
            await self.registrations.close()

    async def round(self, now: datetime | None = None, *, extent: Extent | None = None) -> Round:
        """Check every series at each window end it has not been checked at; returns what was done.
        `extent`: the registrations' offsets to take as the topic's (a rebuild's snapshot); default: Kafka's now."""
        now = now or utc_now()
        s = self.settings
        extent = extent if extent is not None else await self.registrations.extent()
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext('stats:surge-watch'))"):
                return Round(None, 0, 0, 0)  # another instance is checking
            if await conn.fetchval("SELECT 1 FROM consumer_halts WHERE consumer = $1", CONSUMER):
                log.warning("surge watch: the registration consumer is halted; nothing is checked until it resumes")
                return Round(None, 0, 0, 0)
            mark = await watermark(conn, extent, now)
            if mark is None:
                return Round(None, 0, 0, 0)
            last = last_due(mark, now, s.surge_lateness_s)
            round_ = await self._check_to(conn, last)
        if round_.checked_to is not None:
            self.behind.set((now - round_.checked_to).total_seconds())
        return round_

    async def _check_to(self, conn: asyncpg.Connection, last: datetime) -> Round:
        """Check every series at each window end after its last checked, up to `last` (inclusive)."""
        first_counted = await conn.fetchval("SELECT min(hour) FROM hourly")
        if first_counted is None:
            return Round(None, 0, 0, 0)
        first_counted = beijing_hour(first_counted)
        states = {
            r["series"]: SlidingState.from_dict(json.loads(r["state"]))
            for r in await conn.fetch("SELECT series, state FROM surge_series")
        }
        catch_up = max(first_counted, last - timedelta(days=self.settings.surge_catch_up_days))

        def first_due(name: str) -> datetime:
            state = states.get(name)
            return state.last_minute + MINUTE if state and state.last_minute else catch_up

        earliest = min([first_due(n) for n in states] + [catch_up])
        if earliest > last:
            return Round(None, 0, 0, 0)
        config = self.detector.config
        since = max(first_counted, beijing_hour(earliest) - timedelta(days=config.lookback_days + 2))
        end = beijing_hour(last) + HOUR  # the hour holding `last`: its later minutes are computed, not used
        hourly = await self._counts(conn, since, end)
        minutely = await self._minutes(conn, earliest - HOUR, last)
        names = set(hourly) | set(minutely) | {name for name, state in states.items() if state.is_open}
        decisions: list[SlidingDecision] = []
        saved: list[tuple[str, str]] = []
        for name in sorted(names):
            series = _series_of(*name.split(":", 1))
            start = first_due(name)
            if series is None or start > last:
                continue
            counts = HourlyCounts.from_mapping(hourly.get(name, {}), start=since, end=end)
            minutes = MinuteCounts.from_mapping(minutely.get(name, {}), start=earliest - HOUR, end=end)
            found, state = self.detector.observe(series, counts, minutes, states.get(name, SlidingState()), start, last)
            self.checks.inc(int((last - start) / MINUTE) + 1)
            decisions.extend(found)
            saved.append((name, json.dumps(state.to_dict())))
        if not saved:
            return Round(None, 0, 0, 0)
        await conn.executemany(
            "INSERT INTO surge_series (series, state) VALUES ($1, $2::jsonb)"
            " ON CONFLICT (series) DO UPDATE SET state = EXCLUDED.state",
            saved,
        )
        await self._store(conn, decisions)
        opened = sum(1 for d in decisions if d.action == "open")
        return Round(last, len(saved), opened, len(decisions) - opened)

    async def _counts(self, conn: asyncpg.Connection, since: datetime, end: datetime) -> dict[str, dict[datetime, int]]:
        """Matters per hour of every city and every category (repeats are not in `hourly`): the baselines."""
        rows = await conn.fetch(
            "SELECT 'region:' || region AS series, hour, sum(matters)::int AS n FROM hourly"
            " WHERE hour >= $1 AND hour < $2 AND region <> '' GROUP BY 1, 2"
            " UNION ALL SELECT 'category:' || category, hour, sum(matters)::int FROM hourly"
            " WHERE hour >= $1 AND hour < $2 AND category <> 'unknown' GROUP BY 1, 2",
            since,
            end,
        )
        counts: dict[str, dict[datetime, int]] = defaultdict(dict)
        for r in rows:
            counts[r["series"]][r["hour"]] = r["n"]
        return counts

    async def _minutes(self, conn: asyncpg.Connection, since: datetime, end: datetime) -> Counts:
        """Matters per minute of every city and every category registered in [since, end), as `hourly` counts
        them (repeats left out; a category once routing has told it): what the windows observe."""
        rows = await conn.fetch(
            "WITH m AS (SELECT date_trunc('minute', registered_at) AS minute, region, category FROM facts"
            " WHERE registered_at >= $1 AND registered_at < $2 AND repeat IS NULL)"
            " SELECT 'region:' || region AS series, minute, count(*)::int AS n FROM m WHERE region <> '' GROUP BY 1, 2"
            " UNION ALL SELECT 'category:' || category, minute, count(*)::int FROM m"
            " WHERE category IS NOT NULL GROUP BY 1, 2",
            since,
            end,
        )
        counts: dict[str, dict[datetime, int]] = defaultdict(dict)
        for r in rows:
            counts[r["series"]][r["minute"]] = r["n"]
        return counts

    async def _store(self, conn: asyncpg.Connection, decisions: Iterable[SlidingDecision]) -> None:
        for decision in decisions:
            event = alert_event(decision)
            series = decision.series
            if event.state == "open":
                await conn.execute(
                    "INSERT INTO alerts (alert_id, series, region_code, category, state, window_, observed, baseline,"
                    " method, opened_at) VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, $9)"
                    " ON CONFLICT (alert_id) DO NOTHING",
                    event.alert_id,
                    str(series),
                    event.region_code,
                    event.category.value if event.category else None,
                    event.window,
                    event.observed,
                    event.baseline,
                    event.method,
                    event.at,
                )
            else:
                await conn.execute(
                    "UPDATE alerts SET state = 'closed', closed_at = $2 WHERE alert_id = $1", event.alert_id, event.at
                )
            await outbox.enqueue(conn, STATS_ALERTS.name, event, key=series.key)
            self.alerts.labels(event.state).inc()
            log.info(
                "surge alert",
                extra={"series": str(series), "state": event.state, "window": event.window, "observed": event.observed},
            )

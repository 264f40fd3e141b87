"""Supervision's scheduler with 100,000 open deadlines (`make bench` / `python -m tests.bench --only supervision`).

In a fresh database: N matters with an open acceptance deadline each, spread over the units. The scheduler
(in this process, the code every instance runs) is timed over whole passes:
  - nothing due: what a pass costs when it has nothing to do (the index finds no row);
  - all due soon: each deadline moves to due-soon (history row, outbox event);
  - all overdue: each moves to overdue (history row, deadline event and a supervision order to the unit).
The baseline, measured in the same run on the same rows, is one plain `UPDATE` touching every one of them:
the ratio says how close the scheduler's batches of claim, decide, update, history and outbox come to the
cheapest possible write of those rows. Publishing the outbox rows is the relay's work, not timed here.

What a pass did is read from the database, not assumed: the deadlines that reached the pass's stage (stage
counts before and after), the history rows and outbox rows it wrote, beside the number of states the
scheduler says it reached (its return value). The rate is over the deadlines the database shows moved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from xinfang_shared.contracts.reference import UNITS
from xinfang_shared.db import create_pool, migrate_dsn
from xinfang_supervision.app import MIGRATIONS
from xinfang_supervision.clock import Clock
from xinfang_supervision.scheduler import Scheduler

from .common import Figure

STARTED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class SchedulerRun:
    name: str
    expected: int  # deadlines that should reach `stage` in this pass
    stage: str | None  # the stage they should reach (None: nothing is due)
    moved: int  # deadlines the database shows in `stage` now that were not before (or left their stage)
    reported: int  # states reached, as the scheduler's return value says
    history: int  # deadline_history rows the pass wrote
    outbox: int  # outbox rows the pass wrote (events and supervision orders)
    seconds: float

    @property
    def rate(self) -> float:
        return self.moved / self.seconds if self.seconds else 0.0

    @property
    def agrees(self) -> bool:
        return self.moved == self.expected == self.reported == self.history


async def _counts(pool: asyncpg.Pool) -> tuple[dict[str, int], int, int]:
    """Deadlines per stage, history rows, outbox rows."""
    async with pool.acquire() as conn:
        stages = {r["stage"]: r["n"] for r in await conn.fetch("SELECT stage, count(*) AS n FROM deadlines GROUP BY 1")}
        history = await conn.fetchval("SELECT count(*) FROM deadline_history")
        outbox = await conn.fetchval("SELECT count(*) FROM outbox")
    return stages, int(history), int(outbox)


async def _seed(conn: asyncpg.Connection, n: int) -> None:
    await conn.execute(
        "INSERT INTO matters (matter_id, tracking_code, office, unit, status)"
        " SELECT md5(i::text)::uuid, 'BENCH-' || i, 'letters-1', ($2::text[])[1 + i % cardinality($2::text[])],"
        " 'transferred' FROM generate_series(1, $1) AS i",
        n,
        list(UNITS),
    )
    await conn.execute(
        "INSERT INTO deadlines (matter_id, deadline, unit, state, stage, open, round, started_at, due_at, warn_at,"
        " escalate_at, next_check_at)"
        " SELECT matter_id, 'acceptance', unit, 'set', 'set', true, 1, t, t + interval '15 days',"
        " t + interval '12 days', t + interval '22 days', t + interval '12 days'"
        " FROM matters, (SELECT $1::timestamptz AS t) AS started",
        STARTED,
    )
    await conn.execute("VACUUM ANALYZE deadlines")


async def measure(admin_dsn: str, db_dsn: str, n: int, batch_size: int = 500) -> tuple[list[Figure], list[str]]:
    """Figures for the report, and notes."""
    await migrate_dsn(db_dsn, "supervision", MIGRATIONS)
    pool = await create_pool(db_dsn, "supervision", min_size=1, max_size=4)
    try:
        async with pool.acquire() as conn:
            t = time.perf_counter()
            await _seed(conn, n)
            seeded_s = time.perf_counter() - t
            # Baseline: one statement writing every row once (and back, so the scheduler finds them as seeded).
            t = time.perf_counter()
            await conn.execute("UPDATE deadlines SET updated_at = now()")
            baseline_s = time.perf_counter() - t
            await conn.execute("VACUUM ANALYZE deadlines")
        scheduler = Scheduler(pool, Clock(controlled=False), batch_size=batch_size)
        runs = []
        for name, at, stage, expected in (
            ("nothing due", STARTED + timedelta(days=1), None, 0),
            ("all due soon", STARTED + timedelta(days=13), "due-soon", n),
            ("all overdue (with supervision orders)", STARTED + timedelta(days=16), "overdue", n),
        ):
            stages, history, outbox = await _counts(pool)
            t = time.perf_counter()
            reported = await scheduler.run_due(at)
            seconds = time.perf_counter() - t
            stages_after, history_after, outbox_after = await _counts(pool)
            # A pass moves deadlines out of their stage into the next: count what the database shows moved.
            moved = (
                stages_after.get(stage, 0) - stages.get(stage, 0)
                if stage
                else sum(abs(stages_after.get(k, 0) - stages.get(k, 0)) for k in stages | stages_after) // 2
            )
            runs.append(
                SchedulerRun(
                    name, expected, stage, moved, reported, history_after - history, outbox_after - outbox, seconds
                )
            )
    finally:
        await pool.close()
    baseline_rate = n / baseline_s
    figures = [Figure(f"plain UPDATE of {n:,} deadline rows (baseline)", baseline_rate, "rows/s", 1.0)]
    notes = [f"supervision bench: {n:,} open deadlines seeded in {seeded_s:.1f} s"]
    for run in runs:
        counted = (
            f"database: {run.moved:,} of the {run.expected:,} deadlines due moved"
            + (f" to {run.stage}" if run.stage else "")
            + f", {run.history:,} history rows, {run.outbox:,} outbox rows (published by the relay afterwards,"
            f" not timed); the scheduler reported {run.reported:,} states reached"
        )
        if not run.agrees:
            notes.insert(0, f"!!! supervision MISMATCH in the pass '{run.name}': {counted}")
        if run.stage:
            figures.append(
                Figure(
                    f"scheduler pass, {run.name}",
                    run.rate,
                    "deadlines/s",
                    run.rate / baseline_rate,
                    note=f"{counted}; {run.seconds:.2f} s, batches of {batch_size}, {scheduler.workers} concurrent"
                    " workers" + ("" if run.agrees else " — MISMATCH"),
                )
            )
        else:
            figures.append(
                Figure(
                    f"scheduler pass, {run.name}",
                    run.seconds * 1000,
                    "ms",
                    note=f"{n:,} open deadlines; {counted}" + ("" if run.agrees else " — MISMATCH"),
                )
            )
    return figures, notes

"""Analysis reports kept in stats' database, made off the request path.

- `POST /v1/stats/reports` and the monthly schedule add a `pending` row; the worker of any instance takes one
  (FOR UPDATE SKIP LOCKED, a lease), makes its PDF in a thread and stores it `ready`. A worker that dies leaves
  its lease to lapse, and the report is taken again (also after a restart); after MAX_ATTEMPTS it is `failed`.
- On the 1st of each month from 08:00 Beijing time, every instance tries to add the previous month's report;
  a unique index (scheduled, period, language) lets one insert through, so it is made once whatever the number
  of instances. A month without a single matter gets none (a fresh system has nothing to report).
- The monthly report, once ready, is published on stats.reports.v1 (its id and period; the outbox, in the
  transaction that stores it): notify fetches the PDF and e-mails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import asyncpg

from xinfang_shared import outbox
from xinfang_shared.contracts.events import StatsReport, utc_now
from xinfang_shared.contracts.reference import Language
from xinfang_shared.contracts.topics import STATS_REPORTS
from xinfang_shared.workdays import CHINA

from . import report_render
from .figures import Period
from .report_data import gather, month_of
from .settings import StatsSettings

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
MONTHLY_AT = time(8, 0)  # Beijing time, on the 1st
COLUMNS = "report_id, period_start, period_end, language, scheduled, status, attempts, created_at, ready_at, pages"


@dataclass(frozen=True)
class Report:
    report_id: uuid.UUID
    period: Period
    language: str
    scheduled: bool
    attempts: int

    @classmethod
    def of(cls, row: asyncpg.Record) -> Report:
        return cls(
            row["report_id"],
            Period(row["period_start"], row["period_end"]),
            row["language"],
            row["scheduled"],
            row["attempts"],
        )


def listed(row: asyncpg.Record) -> dict[str, Any]:
    """A report as `GET /v1/stats/reports` lists it (CONTRACT.md)."""
    return {
        "report_id": str(row["report_id"]),
        "from": str(row["period_start"]),
        "to": str(row["period_end"]),
        "language": row["language"],
        "status": row["status"],
        "created_at": row["created_at"].isoformat(),
        "ready_at": row["ready_at"].isoformat() if row["ready_at"] else None,
        "pages": row["pages"],
        "monthly": row["scheduled"],
    }


async def ask(pool: asyncpg.Pool, period: Period, language: str) -> asyncpg.Record:
    """A new pending report; the workers are told at once."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"INSERT INTO reports (report_id, period_start, period_end, language) VALUES ($1, $2, $3, $4)"
            f" RETURNING {COLUMNS}",
            uuid.uuid4(),
            period.start,
            period.end,
            language,
        )
        await conn.execute("SELECT pg_notify(current_schema() || '_reports', '')")
    assert row is not None
    return row


async def every(pool: asyncpg.Pool, limit: int = 200) -> list[asyncpg.Record]:
    return list(await pool.fetch(f"SELECT {COLUMNS} FROM reports ORDER BY created_at DESC LIMIT $1", limit))


async def one(pool: asyncpg.Pool, report_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        f"SELECT {COLUMNS}, pdf FROM reports WHERE report_id = $1", report_id
    )
    return row


def monthly_due(now: datetime) -> Period | None:
    """The month whose report is due at `now`: the previous one, from 08:00 Beijing time on the 1st."""
    local = now.astimezone(CHINA)
    if local.time() < MONTHLY_AT and local.day == 1:
        return None
    return month_of(local.date().replace(day=1) - timedelta(days=1))


async def schedule_monthly(pool: asyncpg.Pool, now: datetime, language: str = Language.ZH_CN.value) -> bool:
    """Add the previous month's report once (whoever inserts it first); True when this call added it."""
    period = monthly_due(now)
    if period is None:
        return False
    async with pool.acquire() as conn:
        known = await conn.fetchval(
            "SELECT true FROM reports WHERE scheduled AND period_start = $1 AND period_end = $2 AND language = $3",
            period.start,
            period.end,
            language,
        )
        if known:
            return False
        anything = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM facts WHERE day BETWEEN $1 AND $2)", period.start, period.end
        )
        if not anything:
            return False
        added = await conn.fetchval(
            "INSERT INTO reports (report_id, period_start, period_end, language, scheduled)"
            " VALUES ($1, $2, $3, $4, true) ON CONFLICT DO NOTHING RETURNING true",
            uuid.uuid4(),
            period.start,
            period.end,
            language,
        )
    if added:
        log.info("the monthly report is due", extra={"from": str(period.start), "to": str(period.end)})
    return bool(added)


async def claim(pool: asyncpg.Pool, lease: timedelta) -> Report | None:
    """The oldest report waiting (or whose maker's lease lapsed), leased to this worker."""
    row = await pool.fetchrow(
        "WITH next AS (SELECT report_id FROM reports WHERE status = 'pending'"
        " OR (status = 'generating' AND lease_until < now()) ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " UPDATE reports r SET status = 'generating', lease_until = now() + $1::interval, attempts = r.attempts + 1"
        f" FROM next WHERE r.report_id = next.report_id RETURNING {', '.join('r.' + c for c in COLUMNS.split(', '))}",
        lease,
    )
    return Report.of(row) if row else None


async def make(pool: asyncpg.Pool, report: Report, settings: StatsSettings, now: datetime) -> tuple[bytes, int]:
    """The report's PDF and pages: the figures read here, the PDF set in a thread (CPU: the loop keeps serving)."""
    data = await gather(pool, report.period, report.language, massive=settings.massive_visit_headcount, made_at=now)
    return await asyncio.to_thread(report_render.pdf, data)


async def store(pool: asyncpg.Pool, report: Report, pdf: bytes, pages: int) -> bool:
    """Ready, with its PDF; the monthly one published in the same transaction. Fenced by the attempt: a worker
    whose lease lapsed and was overtaken stores nothing."""
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "UPDATE reports SET status = 'ready', pdf = $3, pages = $4, ready_at = now(), lease_until = NULL,"
            " error = NULL WHERE report_id = $1 AND attempts = $2 AND status = 'generating' RETURNING true",
            report.report_id,
            report.attempts,
            pdf,
            pages,
        )
        if done and report.scheduled:
            event = StatsReport(
                report_id=report.report_id,
                period_start=report.period.start,
                period_end=report.period.end,
                language=Language(report.language),
                pages=pages,
                size_bytes=len(pdf),
            )
            await outbox.enqueue(conn, STATS_REPORTS.name, event, key=str(report.report_id))
    return bool(done)


async def failed(pool: asyncpg.Pool, report: Report, error: BaseException) -> None:
    """Back to pending for another try, or failed for good after MAX_ATTEMPTS (the reason: the error's type)."""
    await pool.execute(
        "UPDATE reports SET status = CASE WHEN attempts >= $3 THEN 'failed' ELSE 'pending' END,"
        " error = $4, lease_until = NULL WHERE report_id = $1 AND attempts = $2",
        report.report_id,
        report.attempts,
        MAX_ATTEMPTS,
        type(error).__name__,
    )


class ReportWorker:
    """Every instance runs one: the monthly schedule, then any report waiting, one at a time."""

    def __init__(self, settings: StatsSettings, pool: asyncpg.Pool, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.pool = pool
        self.clock = clock
        self._wake = asyncio.Event()
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        listener: asyncpg.Connection | None = None
        with contextlib.suppress(Exception):  # without LISTEN it polls
            listener = await asyncpg.connect(self.settings.database_url)
            schema = self.settings.db_schema
            await listener.add_listener(f"{schema}_reports", lambda *_: self._wake.set())
        try:
            while not self._stopping:
                try:
                    await schedule_monthly(self.pool, self.clock())
                    while not self._stopping and await self.run_once():
                        pass
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("reports: the database failed; will retry", extra={"error_type": type(exc).__name__})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.report_poll_s)
                self._wake.clear()
        finally:
            if listener is not None and not listener.is_closed():
                await listener.close()

    async def run_once(self) -> bool:
        """Make one waiting report, if any; True when one was taken."""
        report = await claim(self.pool, timedelta(seconds=self.settings.report_lease_s))
        if report is None:
            return False
        started = asyncio.get_running_loop().time()
        try:
            pdf, pages = await make(self.pool, report, self.settings, self.clock())
        except (OSError, asyncpg.PostgresError):
            await failed(self.pool, report, RuntimeError("database"))
            raise
        except Exception as exc:  # a report that cannot be made is failed with its reason, not retried for ever
            log.exception("a report could not be made", extra={"report_id": str(report.report_id)})
            await failed(self.pool, report, exc)
            return True
        stored = await store(self.pool, report, pdf, pages)
        log.info(
            "report made",
            extra={
                "report_id": str(report.report_id),
                "pages": pages,
                "bytes": len(pdf),
                "seconds": round(asyncio.get_running_loop().time() - started, 1),
                "stored": stored,
            },
        )
        return True

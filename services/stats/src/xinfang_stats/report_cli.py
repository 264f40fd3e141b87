"""`xinfang-stats report --from 2026-05-01 --to 2026-05-31 [--language en] [--out FILE]`: a report made here
and now (not by a service's worker), with a progress bar on stderr; written to FILE and kept in the database
like one asked for over the API (listed by `GET /v1/stats/reports`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import date
from pathlib import Path

from xinfang_shared.contracts.events import utc_now
from xinfang_shared.db import create_pool
from xinfang_shared.workdays import CHINA

from . import report_render
from .report_api import asked_period
from .report_data import gather
from .settings import StatsSettings

BAR = 30


def _bar(done: int, total: int, what: str) -> None:
    filled = BAR * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (BAR - filled)}] {done}/{total} {what:<40}")
    sys.stderr.flush()


async def make(start: date | None, end: date | None, language: str, out: Path | None) -> Path:
    settings = StatsSettings()
    period = asked_period(start, end, utc_now().astimezone(CHINA).date())
    pool = await create_pool(settings.database_url, settings.db_schema, max_size=2)
    began = time.monotonic()
    try:
        data = await gather(
            pool,
            period,
            language,
            massive=settings.massive_visit_headcount,
            made_at=utc_now().astimezone(CHINA),
            progress=lambda done, total, what: _bar(done, total + 2, f"figures: {what}"),
        )
        total = 7 + 2
        _bar(total - 2, total, "charts and layout")
        pdf, pages = await asyncio.to_thread(report_render.pdf, data)
        _bar(total - 1, total, "kept in the database")
        await pool.execute(
            "INSERT INTO reports (report_id, period_start, period_end, language, status, pdf, pages, ready_at)"
            " VALUES ($1, $2, $3, $4, 'ready', $5, $6, now())",
            uuid.uuid4(),
            period.start,
            period.end,
            language,
            pdf,
            pages,
        )
    finally:
        await pool.close()
    path = out or Path(f"xinfang-report-{period.start}-{period.end}-{language}.pdf")
    path.write_bytes(pdf)
    _bar(total, total, "done")
    sys.stderr.write(f"\n{path}: {pages} pages, {len(pdf) // 1024} KB, in {time.monotonic() - began:.1f} s\n")
    return path


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="xinfang-stats report", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--from", dest="start", type=date.fromisoformat, help="first day (default: last month's)")
    parser.add_argument("--to", dest="end", type=date.fromisoformat, help="last day, inclusive")
    parser.add_argument("--language", choices=("zh-CN", "en"), default="zh-CN")
    parser.add_argument("--out", type=Path, help="the PDF's path (default: xinfang-report-<from>-<to>-<lang>.pdf)")
    args = parser.parse_args(argv)
    asyncio.run(make(args.start, args.end, args.language, args.out))

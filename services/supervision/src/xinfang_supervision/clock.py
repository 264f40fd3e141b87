"""Supervision's clock. Real: the wall clock. Controlled (SUPERVISION_CLOCK=controlled, CONTRACT.md): the wall
clock plus an offset kept in PostgreSQL, moved forward by POST /v1/admin/clock/advance, so tests walk matters
through weeks in seconds. The offset is shared by every instance and survives restarts.

Times carried by events (a transfer's `at`, a registration's `registered_at`) are the wall clock of the
service that wrote them; supervision reads them shifted by the same offset, so a matter transferred "now"
starts its deadlines at supervision's now.

The offset is bounded: one advance moves the clock at most MAX_ADVANCE, and never past LATEST. Every date
supervision computes is an event's time or now plus the offset, plus a deadline's length and periods, so a
clock far beyond that would overflow them all (Python's datetimes end in year 9999) and stop supervision."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

import asyncpg

from xinfang_shared.contracts.events import utc_now

log = logging.getLogger(__name__)

# One advance moves the clock at most this far (ten years).
MAX_ADVANCE = timedelta(days=3653)
MAX_ADVANCE_S = int(MAX_ADVANCE.total_seconds())
# Supervision's now never goes past this: deadlines (a few months) and event times shifted by the offset stay
# far from the end of Python's datetimes.
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class ClockRefused(Exception):
    """An advance that would take the clock out of its bounds; nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Clock:
    def __init__(self, *, controlled: bool) -> None:
        self.controlled = controlled
        self._warned_bad_offset = False

    async def offset(self, conn: asyncpg.Connection) -> timedelta:
        if not self.controlled:
            return timedelta(0)
        seconds = float(await conn.fetchval("SELECT offset_s FROM clock"))
        return self._bounded(seconds)

    async def now(self, conn: asyncpg.Connection) -> datetime:
        return utc_now() + await self.offset(conn)

    async def advance(self, conn: asyncpg.Connection, seconds: int) -> timedelta:
        """Moves the clock forward; returns the new offset. Raises ClockRefused (changing nothing) for a step
        beyond MAX_ADVANCE or one that would take the clock past LATEST."""
        if not self.controlled:
            raise RuntimeError("the clock is controlled only with SUPERVISION_CLOCK=controlled")
        if not 0 <= seconds <= MAX_ADVANCE_S:
            raise ClockRefused(f"one advance moves the clock 0 to {MAX_ADVANCE_S} seconds (ten years), not {seconds}")
        # The bound is checked in the update itself, so concurrent advances cannot pass it together.
        room = (LATEST - utc_now()).total_seconds()
        offset = await conn.fetchval(
            "UPDATE clock SET offset_s = offset_s + $1 WHERE offset_s + $1 <= $2 RETURNING offset_s",
            float(seconds),
            room,
        )
        if offset is None:
            current = self._bounded(float(await conn.fetchval("SELECT offset_s FROM clock")))
            now = utc_now() + current
            raise ClockRefused(
                f"the clock is at {now.isoformat(timespec='seconds')}; {seconds} seconds more would take it past"
                f" {LATEST.isoformat()}, the latest it goes (at most {max(int((LATEST - now).total_seconds()), 0)})"
            )
        return timedelta(seconds=float(offset))

    def _bounded(self, seconds: float) -> timedelta:
        """The stored offset, kept within the clock's bounds: one written before they existed (or by hand) may
        lie beyond them, and would make every date supervision computes overflow."""
        room = (LATEST - utc_now()).total_seconds()
        if math.isfinite(seconds) and 0 <= seconds <= room:
            return timedelta(seconds=seconds)
        if not self._warned_bad_offset:
            self._warned_bad_offset = True
            log.warning(
                "the stored clock offset is out of bounds; using the nearest bound",
                extra={"offset_s": seconds, "latest": LATEST.isoformat()},
            )
        return timedelta(seconds=0 if seconds < 0 else room)

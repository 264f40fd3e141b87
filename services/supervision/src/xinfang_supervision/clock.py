"""Supervision's clock. Real: the wall clock. Controlled (SUPERVISION_CLOCK=controlled, CONTRACT.md): the wall
clock plus an offset kept in PostgreSQL, moved forward by POST /v1/admin/clock/advance, so tests walk matters
through weeks in seconds. The offset is shared by every instance and survives restarts.

Times carried by events (a transfer's `at`, a registration's `registered_at`) are the wall clock of the
service that wrote them; supervision reads them shifted by the same offset, so a matter transferred "now"
starts its deadlines at supervision's now."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from xinfang_shared.contracts.events import utc_now


class Clock:
    def __init__(self, *, controlled: bool) -> None:
        self.controlled = controlled

    async def offset(self, conn: asyncpg.Connection) -> timedelta:
        if not self.controlled:
            return timedelta(0)
        seconds = await conn.fetchval("SELECT offset_s FROM clock")
        return timedelta(seconds=float(seconds))

    async def now(self, conn: asyncpg.Connection) -> datetime:
        return utc_now() + await self.offset(conn)

    async def advance(self, conn: asyncpg.Connection, seconds: float) -> timedelta:
        """Moves the clock forward; returns the new offset."""
        if not self.controlled:
            raise RuntimeError("the clock is controlled only with SUPERVISION_CLOCK=controlled")
        offset = await conn.fetchval("UPDATE clock SET offset_s = offset_s + $1 RETURNING offset_s", seconds)
        return timedelta(seconds=float(offset))

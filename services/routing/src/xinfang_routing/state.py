"""What routing's handlers share once the service has started."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from xinfang_shared import inbox
from xinfang_shared.contracts.events import UnitFeedback, utc_now

from .feedback import FeedbackHandler
from .routing import Router


@dataclass
class RoutingState:
    pool: asyncpg.Pool
    router: Router
    feedback: FeedbackHandler
    unit_keys: dict[str, str]

    async def take_feedback(self, feedback: UnitFeedback, *, arrived_at: datetime) -> None:
        """Apply one unit action, which reached the system at `arrived_at`, once (a redelivered event_id changes
        nothing); raises Refused."""
        async with self.pool.acquire() as conn, conn.transaction():
            if await inbox.first_time(conn, feedback.event_id, source="units.feedback"):
                await self.feedback.apply(conn, feedback, utc_now(), arrived_at=arrived_at)

"""What the reports count besides the facts: the supervision orders (督办, a statutory deadline gone overdue)
and escalations, one row per deadline event, kept beside the facts' fold of the same batch."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from xinfang_shared.contracts.events import DeadlineEvent, Event
from xinfang_shared.contracts.reference import DeadlineState
from xinfang_shared.workdays import CHINA

KEPT = (DeadlineState.OVERDUE, DeadlineState.ESCALATED)


async def keep_supervision(pool: asyncpg.Pool, events: Sequence[Event]) -> int:
    """Insert the batch's overdue (a window is never overdue: no order) and escalated events; a redelivered one
    adds nothing (its event_id). Returns how many were new."""
    kept = [e for e in events if isinstance(e, DeadlineEvent) and not e.window and e.state in KEPT]
    if not kept:
        return 0
    rows = await pool.fetch(
        "INSERT INTO supervision_actions (event_id, matter_id, state, unit, office, at, day)"
        " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],"
        " $7::date[]) ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        [e.event_id for e in kept],
        [e.matter_id for e in kept],
        [e.state.value for e in kept],
        [e.unit for e in kept],
        [e.office.value if e.office else None for e in kept],
        [e.at for e in kept],
        [e.at.astimezone(CHINA).date() for e in kept],
    )
    return len(rows)

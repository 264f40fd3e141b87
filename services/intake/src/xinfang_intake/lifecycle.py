"""What intake learns back about the matters it registered, for the petitioner look-up and for repeats:
status (and the opinion) from matters.status.v1, office and unit from matters.routed.v1, deadlines from
deadlines.events.v1. Each update is guarded by its event time, so a redelivered or late event changes
nothing: the consumers are idempotent without an inbox. (A matter is routed again after an objection or a
reassignment: the unit then comes with the status change, and an old routing redelivered late cannot undo
it.)"""

from __future__ import annotations

import asyncpg

from xinfang_shared.contracts.events import DeadlineEvent, MatterRouted, MatterStatusChanged

from .registration import CONCLUDED


async def apply_status(pool: asyncpg.Pool, event: MatterStatusChanged) -> None:
    await pool.execute(
        "UPDATE matters SET status = $2, status_at = $3, unit = $4,"
        " opinion = coalesce($5, opinion),"
        " concluded_at = CASE WHEN $6 THEN $3 ELSE concluded_at END"
        " WHERE matter_id = $1 AND status_at <= $3",
        event.matter_id,
        event.status.value,
        event.at,
        event.unit,
        event.opinion.model_dump(mode="json") if event.opinion else None,
        event.status in CONCLUDED,
    )


async def apply_routed(pool: asyncpg.Pool, event: MatterRouted) -> None:
    await pool.execute(
        # The unit only if no later status change (a re-route, a reassignment) was applied already.
        "UPDATE matters SET office = $2, unit = CASE WHEN status_at <= $5 THEN $3 ELSE unit END, category = $4,"
        " routed_at = $5 WHERE matter_id = $1 AND (routed_at IS NULL OR routed_at < $5)",
        event.matter_id,
        event.office.value,
        event.unit,
        event.category.value,
        event.routed_at,
    )


async def apply_deadline(pool: asyncpg.Pool, event: DeadlineEvent) -> None:
    await pool.execute(
        "INSERT INTO matter_deadlines (matter_id, deadline, state, due_at, at)"
        " SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM matters WHERE matter_id = $1)"
        " ON CONFLICT (matter_id, deadline) DO UPDATE SET state = excluded.state, due_at = excluded.due_at,"
        " at = excluded.at WHERE matter_deadlines.at <= excluded.at",
        event.matter_id,
        event.deadline.value,
        event.state.value,
        event.due_at,
        event.at,
    )

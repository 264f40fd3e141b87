"""What intake learns back about the matters it registered, for the petitioner look-up and for repeats:
status, unit and opinion from matters.status.v1, and office and category from it as well (the change a matter
is routed by carries them: intake does not read matters.routed.v1), deadlines from deadlines.events.v1, a batch
of each at a time in one transaction (in the batch's order). Each update is guarded by its event time, so a
redelivered or late event changes nothing: the consumers are idempotent without an inbox."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from xinfang_shared.contracts.events import DeadlineEvent, MatterStatusChanged

from .registration import CONCLUDED


async def apply_status(conn: asyncpg.Connection, events: Sequence[MatterStatusChanged]) -> None:
    await conn.executemany(
        "UPDATE matters SET status = $2, status_at = $3, unit = $4,"
        " opinion = coalesce($5, opinion),"
        " concluded_at = CASE WHEN $6 THEN $3 ELSE concluded_at END,"
        " office = coalesce($7, office), category = coalesce($8, category),"
        " routed_at = CASE WHEN $9 THEN $3 ELSE routed_at END"
        " WHERE matter_id = $1 AND status_at <= $3",
        [
            (
                e.matter_id,
                e.status.value,
                e.at,
                e.unit,
                e.opinion.model_dump(mode="json") if e.opinion else None,
                e.status in CONCLUDED,
                e.office.value if e.office else None,
                e.category.value if e.category else None,
                e.action == "routed",
            )
            for e in events
        ],
    )


async def apply_deadline(conn: asyncpg.Connection, events: Sequence[DeadlineEvent]) -> None:
    """One statement for the batch. Each (matter, deadline) keeps only its latest state, so of a batch's events
    for one only the last by event time (the later in the batch on a tie) counts, as it would one at a time."""
    latest: dict[tuple[object, str], DeadlineEvent] = {}
    for e in events:
        kept = latest.get((e.matter_id, e.deadline.value))
        if kept is None or kept.at <= e.at:
            latest[(e.matter_id, e.deadline.value)] = e
    if not latest:
        return
    rows = list(latest.values())
    await conn.execute(
        "INSERT INTO matter_deadlines (matter_id, deadline, state, due_at, at)"
        " SELECT e.* FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[])"
        " AS e(matter_id, deadline, state, due_at, at)"
        " WHERE EXISTS (SELECT 1 FROM matters WHERE matters.matter_id = e.matter_id)"
        " ON CONFLICT (matter_id, deadline) DO UPDATE SET state = excluded.state, due_at = excluded.due_at,"
        " at = excluded.at WHERE matter_deadlines.at <= excluded.at",
        [e.matter_id for e in rows],
        [e.deadline.value for e in rows],
        [e.state.value for e in rows],
        [e.due_at for e in rows],
        [e.at for e in rows],
    )

"""The deadline history: every state a deadline went through, written by the ledger and the scheduler alike."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

# (matter, deadline, round, state, due time, unit, when, detail): one row of deadline_history.
HistoryRow = tuple[uuid.UUID, str, int, str, datetime, str | None, datetime, str | None]


async def record_history(conn: asyncpg.Connection, rows: Sequence[HistoryRow]) -> set[tuple[Any, ...]]:
    """Write the rows in one statement. A warning or a lapse already written for its round (the unique index
    deadline_history_once) is not written again; returns the (matter, deadline, round, state) of those written
    now."""
    if not rows:
        return set()
    written = await conn.fetch(
        "INSERT INTO deadline_history (matter_id, deadline, round, state, due_at, unit, at, detail)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::timestamptz[], $6::text[],"
        " $7::timestamptz[], $8::text[]) ON CONFLICT DO NOTHING RETURNING matter_id, deadline, round, state",
        *(list(column) for column in zip(*rows, strict=True)),
    )
    return {(row["matter_id"], row["deadline"], row["round"], row["state"]) for row in written}

"""The inbox: a consumer's record of event ids it has already processed.

Call `first_time` inside the transaction that performs the side effect. If it returns False the event was
processed before (a redelivery) and the caller skips it; the row and the side effect commit or roll back
together, so a crash between them cannot lose or double anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import asyncpg

from . import tracing


async def first_time(conn: asyncpg.Connection, event_id: uuid.UUID, source: str) -> bool:
    inserted = await conn.fetchval(
        "INSERT INTO inbox (event_id, source) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        event_id,
        source,
    )
    if not inserted:
        tracing.mark_redelivered([event_id])
    return bool(inserted)


async def first_time_many(conn: asyncpg.Connection, event_ids: Iterable[uuid.UUID], source: str) -> set[uuid.UUID]:
    """Batch form: claims the ids and returns those not seen before."""
    ids = list(dict.fromkeys(event_ids))
    rows: list[Any] = await conn.fetch(
        "INSERT INTO inbox (event_id, source) SELECT unnest($1::uuid[]), $2 ON CONFLICT DO NOTHING RETURNING event_id",
        ids,
        source,
    )
    fresh = {r["event_id"] for r in rows}
    if len(fresh) < len(ids):
        tracing.mark_redelivered(i for i in ids if i not in fresh)
    return fresh


async def prune_inbox(pool: asyncpg.Pool, keep: timedelta, *, batch: int = 10_000) -> int:
    """Delete the records processed more than `keep` ago, a batch per transaction (never one long lock);
    returns how many went."""
    total = 0
    while True:
        deleted: int = await pool.fetchval(
            "WITH old AS (SELECT event_id FROM inbox WHERE processed_at < now() - $1::interval LIMIT $2"
            " FOR UPDATE SKIP LOCKED) , gone AS (DELETE FROM inbox i USING old WHERE i.event_id = old.event_id"
            " RETURNING 1) SELECT count(*) FROM gone",
            keep,
            batch,
        )
        total += deleted
        if deleted < batch:
            return total

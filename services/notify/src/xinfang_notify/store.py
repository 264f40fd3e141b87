"""Notify's SQL: what it keeps of matters, the notices planned, claimed, sent and failed.

Planning runs inside the consumer's transaction; the unique key (matter, notice, recipient, about) makes a
notice once whatever event or redelivery plans it again (so notify keeps no inbox records). A sender claims
due notices with FOR UPDATE SKIP LOCKED and a lease; every later write about a claimed notice names the
attempt it claimed (a fencing token), so a sender whose lease lapsed cannot overwrite what another has done
since.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from xinfang_shared.contracts.events import MatterRegisteredV2
from xinfang_shared.personal import PersonalDataVault

from .rules import Planned

DUE = ("pending", "held")
DUE_SQL = "(" + ", ".join(f"'{status}'" for status in DUE) + ")"  # constants, as the partial indexes name them


@dataclass(frozen=True)
class Claimed:
    """A notice a sender holds, with what it needs to compose it (the matter's row, when notify has it)."""

    id: int
    key: uuid.UUID
    matter_id: uuid.UUID
    notice: str
    recipient_kind: str
    recipient: str
    urgent: bool
    params: dict[str, Any]
    attempts: int
    created_at: datetime
    matter: Any | None  # the matters row (tracking code, language, sealed contact, ...), or None
    claimed_at: float = 0.0  # the event loop's time when it was claimed (how much of the lease is left)


async def save_matters(
    conn: asyncpg.Connection, events: Sequence[MatterRegisteredV2], vault: PersonalDataVault
) -> None:
    """What notify keeps of each matter (its contact sealed), once: a redelivered registration changes nothing."""
    if not events:
        return
    people = [e.opened() for e in events]
    await conn.execute(
        "INSERT INTO matters (matter_id, tracking_code, language, contact, by_email, headcount, visit_place,"
        " visit_unusual, registered_at) SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[],"
        " $5::bool[], $6::int[], $7::text[], $8::bool[], $9::timestamptz[]) ON CONFLICT (matter_id) DO NOTHING",
        [e.matter_id for e in events],
        [p.tracking_code for p in people],
        [e.language.value for e in events],
        [vault.seal({"email": p.petitioner.email, "phone": p.petitioner.phone}) for p in people],
        [bool(p.petitioner.email) for p in people],
        [e.headcount for e in events],
        [e.visit.place.value if e.visit else None for e in events],
        [bool(e.visit and e.visit.unusual) for e in events],
        [e.registered_at for e in events],
    )


async def plan(conn: asyncpg.Connection, planned: Sequence[Planned]) -> int:
    """Insert the notices not planned before; returns how many are new."""
    if not planned:
        return 0
    rows = await conn.fetch(
        "INSERT INTO notifications (key, matter_id, notice, recipient_kind, recipient, about, urgent, params)"
        " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::bool[], $8::jsonb[]) ON CONFLICT DO NOTHING RETURNING id",
        [p.key for p in planned],
        [p.matter_id for p in planned],
        [p.notice.value for p in planned],
        [p.recipient_kind.value for p in planned],
        [p.recipient for p in planned],
        [p.about for p in planned],
        [p.urgent for p in planned],
        [p.params for p in planned],
    )
    return len(rows)


async def claim(pool: asyncpg.Pool, limit: int, lease: timedelta) -> list[Claimed]:
    rows = await pool.fetch(
        # The statuses written out (not a parameter): a generic plan then still matches notifications_claim's
        # predicate, and reads the index in its order (migration 0002).
        f"WITH due AS (SELECT id FROM notifications WHERE status IN {DUE_SQL} AND next_attempt_at <= now()"
        " AND (lease_until IS NULL OR lease_until < now()) ORDER BY urgent DESC, next_attempt_at LIMIT $1"
        " FOR UPDATE SKIP LOCKED)"
        " UPDATE notifications n SET lease_until = now() + $2::interval, attempts = n.attempts + 1,"
        " updated_at = now() FROM due WHERE n.id = due.id"
        " RETURNING n.id, n.key, n.matter_id, n.notice, n.recipient_kind, n.recipient, n.urgent, n.params,"
        " n.attempts, n.created_at",
        limit,
        lease,
    )
    if not rows:
        return []
    matters = {
        r["matter_id"]: r
        for r in await pool.fetch("SELECT * FROM matters WHERE matter_id = ANY($1)", [r["matter_id"] for r in rows])
    }
    now = asyncio.get_running_loop().time()
    return [Claimed(**dict(r), matter=matters.get(r["matter_id"]), claimed_at=now) for r in rows]


async def renew(pool: asyncpg.Pool, n: Claimed, lease: timedelta) -> bool:
    """Just before sending: the claim is still this sender's (its lease has not lapsed and nobody claimed the
    notice since), and it holds for another `lease`. A claim that lapsed while the batch was being worked
    through is given up, so two senders never send one notice at once."""
    held = await pool.fetchval(
        "UPDATE notifications SET lease_until = now() + $3::interval WHERE id = $1 AND attempts = $2"
        " AND lease_until > now() RETURNING true",
        n.id,
        n.attempts,
        lease,
    )
    return bool(held)


async def matter(pool: asyncpg.Pool, matter_id: uuid.UUID) -> Any | None:
    """What notify keeps of a matter (its row), or None when it has not seen it registered."""
    return await pool.fetchrow("SELECT * FROM matters WHERE matter_id = $1", matter_id)


async def sent(
    conn: asyncpg.Connection | asyncpg.Pool, n: Claimed, channel: str, masked: str, provider_id: str
) -> bool:
    done = await conn.fetchval(
        "UPDATE notifications SET status = 'sent', channel = $3, address_masked = $4, provider_id = $5,"
        " sent_at = now(), lease_until = NULL, last_error = NULL, updated_at = now()"
        " WHERE id = $1 AND attempts = $2 RETURNING true",
        n.id,
        n.attempts,
        channel,
        masked,
        provider_id[:500],
    )
    return bool(done)


@dataclass(frozen=True)
class Accepted:
    """A notice the SMTP server or the gateway took, to be marked sent."""

    notice: Claimed
    channel: str
    masked: str
    provider_id: str
    at: datetime  # when the server or the gateway took it: its sent_at (the batch is marked later)


async def sent_many(pool: asyncpg.Pool, accepted: Sequence[Accepted]) -> int:
    """`sent` for a sender's batch in one statement (each row still fenced by its attempt); how many held."""
    marked = await pool.fetch(
        "UPDATE notifications n SET status = CASE WHEN n.status IN ('delivered', 'undelivered') THEN n.status"
        " ELSE 'sent' END, channel = a.channel, address_masked = a.masked,"
        " provider_id = a.provider_id, sent_at = a.at, lease_until = NULL, updated_at = now(),"
        " last_error = CASE WHEN n.status = 'undelivered' THEN n.last_error END"
        " FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])"
        " AS a(id, attempts, channel, masked, provider_id, at)"
        " WHERE n.id = a.id AND n.attempts = a.attempts RETURNING n.id",
        [a.notice.id for a in accepted],
        [a.notice.attempts for a in accepted],
        [a.channel for a in accepted],
        [a.masked for a in accepted],
        [a.provider_id[:500] for a in accepted],
        [a.at for a in accepted],
    )
    return len(marked)


async def failed(pool: asyncpg.Pool, n: Claimed, reason: str, *, channel: str | None, masked: str | None) -> None:
    """Failed for good: the reason is shown in the list, and an operator may send it again."""
    await pool.execute(
        "UPDATE notifications SET status = 'failed', dead_lettered = true, last_error = $3, channel = $4,"
        " address_masked = $5, lease_until = NULL, updated_at = now() WHERE id = $1 AND attempts = $2",
        n.id,
        n.attempts,
        reason[:1000],
        channel,
        masked,
    )


async def later(
    pool: asyncpg.Pool,
    n: Claimed,
    at: datetime,
    *,
    status: str = "pending",
    reason: str | None = None,
    counts: bool = True,
    channel: str | None = None,
    masked: str | None = None,
) -> None:
    """Try again at `at` (held: waiting out quiet hours, its channel and masked address already known, so the
    list of notices names them). An attempt that did not count is given back."""
    await pool.execute(
        "UPDATE notifications SET status = $3, next_attempt_at = $4, last_error = COALESCE($5, last_error),"
        " lease_until = NULL, attempts = attempts - CASE WHEN $6 THEN 0 ELSE 1 END, updated_at = now(),"
        " channel = COALESCE($7, channel), address_masked = COALESCE($8, address_masked)"
        " WHERE id = $1 AND attempts = $2",
        n.id,
        n.attempts,
        status,
        at,
        reason,
        counts,
        channel,
        masked,
    )


async def receipts(pool: asyncpg.Pool, got: Sequence[tuple[uuid.UUID, bool, str]]) -> int:
    """Delivery receipts (OutId, delivered?, detail) for SMS sent with those keys, in one statement; how many
    matched. A receipt may come before its sender has marked the batch sent (sent_many): it applies to the
    claimed row all the same (the gateway had it), and the later mark keeps what the receipt said."""
    rows = await pool.fetch(
        "UPDATE notifications n SET status = CASE WHEN r.delivered THEN 'delivered' ELSE 'undelivered' END,"
        " last_error = CASE WHEN r.delivered THEN n.last_error ELSE r.detail END, channel = 'sms',"
        " sent_at = COALESCE(n.sent_at, now()), lease_until = NULL, updated_at = now()"
        " FROM unnest($1::uuid[], $2::bool[], $3::text[]) AS r(key, delivered, detail)"
        " WHERE n.key = r.key AND (n.status IN ('sent', 'delivered', 'undelivered')"
        " OR (n.status = 'pending' AND n.lease_until IS NOT NULL)) RETURNING n.id",
        [k for k, _, _ in got],
        [d for _, d, _ in got],
        [detail[:500] for _, _, detail in got],
    )
    return len(rows)

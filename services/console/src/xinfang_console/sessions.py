"""Sessions: a random token in a signed, HttpOnly, SameSite=Strict cookie (Secure outside local and test), known
to the database by its SHA-256 only; it ends after `session_idle_s` unused, `session_max_s` after sign-in, at sign-
out, or when the account's password changes or it is disabled. Each session has a CSRF token that every change
must send back (a form field or X-CSRF-Token). Before sign-in, the form carries a token of its own, bound to a
short-lived signed cookie (login CSRF)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from .accounts import Account, _account

COOKIE = "xf_session"
PRE_COOKIE = "xf_signin"  # the sign-in form's CSRF token, before there is a session


def sign(value: str, secret: str) -> str:
    mac = hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()
    return f"{value}.{mac}"


def unsign(signed: str | None, secret: str) -> str | None:
    """The value if its signature is right; None otherwise (a forged or altered cookie never reaches the database)."""
    if not signed or "." not in signed:
        return None
    value, _, mac = signed.rpartition(".")
    expected = hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()
    return value if hmac.compare_digest(mac, expected) else None


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Session:
    account: Account
    csrf: str
    token: str


async def open_session(conn: asyncpg.Connection, account: Account, max_s: int) -> Session:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO sessions (token_hash, username, csrf, expires_at) VALUES ($1, $2, $3, now() + $4::interval)",
        _hash(token),
        account.username,
        csrf,
        timedelta(seconds=max_s),
    )
    return Session(account, csrf, token)


async def current(conn: asyncpg.Connection, token: str | None, idle_s: int) -> Session | None:
    """The live session of `token` (and it is seen now), or None: unknown, expired, idle too long, or its account
    disabled."""
    if token is None:
        return None
    row = await conn.fetchrow(
        "UPDATE sessions s SET seen_at = now() FROM staff a"
        " WHERE s.token_hash = $1 AND a.username = s.username AND NOT a.disabled"
        " AND s.expires_at > now() AND s.seen_at > now() - $2::interval"
        " RETURNING s.csrf, a.*",
        _hash(token),
        timedelta(seconds=idle_s),
    )
    return None if row is None else Session(_account(row), row["csrf"], token)


async def close(conn: asyncpg.Connection, token: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_hash = $1", _hash(token))


async def prune(conn: asyncpg.Connection, idle_s: int) -> int:
    done = await conn.execute(
        "DELETE FROM sessions WHERE expires_at <= now() OR seen_at <= now() - $1::interval", timedelta(seconds=idle_s)
    )
    return int(done.split()[-1])


# ---- the sign-in limits -------------------------------------------------------------------------------------


async def refused_for(
    conn: asyncpg.Connection, username: str, address: str, window_s: int, per_account: int, per_address: int
) -> float | None:
    """Seconds until this account may try again from this address, or None when it may now: too many failures in
    the window for the account (whoever tries) or from the address (whichever account)."""
    window = timedelta(seconds=window_s)
    rows = await conn.fetch(
        "SELECT kind, count(*) AS n, min(at) AS first FROM signin_failures"
        " WHERE ((kind = 'account' AND key = $1) OR (kind = 'address' AND key = $2)) AND at > now() - $3::interval"
        " GROUP BY kind",
        username,
        address,
        window,
    )
    limits = {"account": per_account, "address": per_address}
    waits = [(r["first"] + window) for r in rows if r["n"] >= limits[r["kind"]]]
    if not waits:
        return None
    now = await conn.fetchval("SELECT now()")
    return max(1.0, float((max(waits) - now).total_seconds()))


async def note_failure(conn: asyncpg.Connection, username: str, address: str, window_s: int) -> None:
    await conn.execute(
        "INSERT INTO signin_failures (kind, key) VALUES ('account', $1), ('address', $2)", username, address
    )
    await conn.execute("DELETE FROM signin_failures WHERE at <= now() - $1::interval", timedelta(seconds=window_s))

"""The bureau's staff accounts: who they are, their office and role, and their password (argon2id, argon2-cffi's
defaults: RFC 9106's second recommended set, a rehash when they change)."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from xinfang_shared.contracts.reference import Office
from xinfang_shared.staff import USER, Role

HASHER = PasswordHasher()
# Verified against when the account does not exist, so a wrong name costs what a wrong password costs.
_NOBODY = HASHER.hash(secrets.token_urlsafe(16))
MIN_PASSWORD = 12


class AccountRefused(ValueError):
    """An account that cannot be made or changed as asked (the message says why)."""


@dataclass(frozen=True)
class Account:
    username: str
    display_name: str
    role: Role
    office: Office | None


def _account(row: asyncpg.Record) -> Account:
    return Account(
        row["username"], row["display_name"], Role(row["role"]), Office(row["office"]) if row["office"] else None
    )


def new_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


def _check(username: str, role: Role, office: Office | None, password: str) -> None:
    if not USER.match(username):
        raise AccountRefused("a user name is lower-case letters, digits, '.', '_' or '-' (at most 64)")
    if (role == Role.LEADER) != (office is None):
        raise AccountRefused("a leader has no office; a clerk or a head has one")
    if len(password) < MIN_PASSWORD:
        raise AccountRefused(f"a password has at least {MIN_PASSWORD} characters")


async def add(
    conn: asyncpg.Connection, username: str, role: Role, office: Office | None, password: str, display_name: str = ""
) -> Account:
    _check(username, role, office, password)
    row = await conn.fetchrow(
        "INSERT INTO staff (username, display_name, role, office, password_hash) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (username) DO NOTHING RETURNING *",
        username,
        display_name or username,
        role.value,
        office.value if office else None,
        HASHER.hash(password),
    )
    if row is None:
        raise AccountRefused(f"there is an account {username} already")
    return _account(row)


async def set_password(conn: asyncpg.Connection, username: str, password: str) -> None:
    """A new password; every session of the account ends."""
    if len(password) < MIN_PASSWORD:
        raise AccountRefused(f"a password has at least {MIN_PASSWORD} characters")
    async with conn.transaction():
        changed = await conn.execute(
            "UPDATE staff SET password_hash = $2, password_set_at = now() WHERE username = $1",
            username,
            HASHER.hash(password),
        )
        if changed == "UPDATE 0":
            raise AccountRefused(f"no account {username}")
        await conn.execute("DELETE FROM sessions WHERE username = $1", username)


async def disable(conn: asyncpg.Connection, username: str, disabled: bool = True) -> None:
    """A disabled account signs in no more, and its sessions end now."""
    async with conn.transaction():
        changed = await conn.execute("UPDATE staff SET disabled = $2 WHERE username = $1", username, disabled)
        if changed == "UPDATE 0":
            raise AccountRefused(f"no account {username}")
        await conn.execute("DELETE FROM sessions WHERE username = $1", username)


async def listed(conn: asyncpg.Connection) -> list[tuple[Account, bool]]:
    rows = await conn.fetch("SELECT * FROM staff ORDER BY office NULLS FIRST, role, username")
    return [(_account(r), r["disabled"]) for r in rows]


async def verify(conn: asyncpg.Connection, username: str, password: str) -> Account | None:
    """The account, if the name and password are right and it is not disabled."""
    row = await conn.fetchrow("SELECT * FROM staff WHERE username = $1", username)
    try:
        # argon2 takes tens of milliseconds of CPU on purpose: off the event loop, which serves everyone else.
        await asyncio.to_thread(HASHER.verify, row["password_hash"] if row else _NOBODY, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row["disabled"]:
        return None
    if HASHER.check_needs_rehash(row["password_hash"]):
        await conn.execute("UPDATE staff SET password_hash = $2 WHERE username = $1", username, HASHER.hash(password))
    return _account(row)

"""Channel systems' API keys: one per system, naming the channels it may submit for; stored hashed."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import asyncpg

from xinfang_shared.contracts.reference import Channel


@dataclass(frozen=True)
class ChannelSystem:
    name: str
    channels: frozenset[Channel]


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return "xfc_" + secrets.token_urlsafe(32)


async def add_key(conn: asyncpg.Connection, *, system: str, channels: list[Channel], key: str | None = None) -> str:
    """Create or replace the key of `system`; returns the key (shown once, never stored)."""
    key = key or new_key()
    await conn.execute(
        "INSERT INTO channel_keys (key_hash, system, channels) VALUES ($1, $2, $3)"
        " ON CONFLICT (system) DO UPDATE SET key_hash = excluded.key_hash, channels = excluded.channels,"
        " revoked_at = NULL",
        key_hash(key),
        system,
        [c.value for c in channels],
    )
    return key


class ChannelKeys:
    """Looks keys up in memory, reloading the table at most once a second when a key is not found."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._keys: dict[bytes, ChannelSystem] = {}
        self._loaded_at = 0.0

    async def system_for(self, key: str) -> ChannelSystem | None:
        digest = key_hash(key)
        found = self._keys.get(digest)
        if found is None and time.monotonic() - self._loaded_at > 1.0:
            await self.reload()
            found = self._keys.get(digest)
        return found

    async def reload(self) -> None:
        rows = await self.pool.fetch("SELECT key_hash, system, channels FROM channel_keys WHERE revoked_at IS NULL")
        self._keys = {
            bytes(r["key_hash"]): ChannelSystem(r["system"], frozenset(Channel(c) for c in r["channels"])) for r in rows
        }
        self._loaded_at = time.monotonic()

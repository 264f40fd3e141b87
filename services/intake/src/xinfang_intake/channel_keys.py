"""Channel systems' API keys: one per system, naming the channels it may submit for; stored hashed.

Every instance keeps the keys in memory and reloads the table when its copy is older than `refresh_s`
(settings.channel_keys_refresh_s), so a key revoked (`xinfang-intake keys revoke`) stops working on every
instance within that time, and when a key it does not know comes (a key just added), at most once a second.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass

import asyncpg

from xinfang_shared.contracts.reference import Channel

from .settings import IntakeSettings

REFRESH_S = float(IntakeSettings.model_fields["channel_keys_refresh_s"].default)
# An unknown key reloads the table at most this often (keys added are seen this soon; guessing costs nothing).
UNKNOWN_KEY_RELOAD_S = 1.0


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


async def revoke_key(conn: asyncpg.Connection, *, system: str) -> bool:
    """Revoke the key of `system`; False when it has none that is not already revoked."""
    revoked = await conn.fetchval(
        "UPDATE channel_keys SET revoked_at = now() WHERE system = $1 AND revoked_at IS NULL RETURNING system",
        system,
    )
    return revoked is not None


class ChannelKeys:
    """Looks keys up in memory. The table is reloaded by the lookup that finds the copy older than `refresh_s`
    (lookups arriving meanwhile wait for that one reload; when it fails, the lookup raises and the next one
    tries again: no key is let through on a copy older than `refresh_s`), and by one that finds no such key,
    at most once a second. `refresh_s` defaults to the default of settings.channel_keys_refresh_s."""

    def __init__(self, pool: asyncpg.Pool, *, refresh_s: float = REFRESH_S) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be positive, not {refresh_s}")
        self.pool = pool
        self.refresh_s = refresh_s
        self._keys: dict[bytes, ChannelSystem] = {}
        self._loaded_at = -float("inf")  # monotonic time the copy in hand was read at (at the latest)
        self._generation = 0  # reloads so far
        self._reloading = asyncio.Lock()

    async def system_for(self, key: str) -> ChannelSystem | None:
        digest = key_hash(key)
        if time.monotonic() - self._loaded_at >= self.refresh_s:
            await self._reload_once()
        found = self._keys.get(digest)
        if found is None and time.monotonic() - self._loaded_at > UNKNOWN_KEY_RELOAD_S:
            await self._reload_once()
            found = self._keys.get(digest)
        return found

    async def _reload_once(self) -> None:
        """Reload, unless another caller did while this one waited for it (one reload for them all)."""
        seen = self._generation
        async with self._reloading:
            if self._generation == seen:
                await self.reload()

    async def reload(self) -> None:
        started = time.monotonic()
        rows = await self.pool.fetch("SELECT key_hash, system, channels FROM channel_keys WHERE revoked_at IS NULL")
        self._keys = {
            bytes(r["key_hash"]): ChannelSystem(r["system"], frozenset(Channel(c) for c in r["channels"])) for r in rows
        }
        self._loaded_at = started
        self._generation += 1

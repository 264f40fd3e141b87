"""PostgreSQL access: one asyncpg pool per service, pinned to the service's own schema, and migrations.

Migrations are plain numbered `.sql` files in each service's `migrations/` folder, applied in order inside
one transaction under an advisory lock, recorded in `<schema>.schema_migrations`. The shared messaging
tables (outbox, inbox) come first, from this package's `migrations/`. We use raw SQL with asyncpg, so a
tool built around an ORM (alembic) or a sync driver (yoyo) would add a second database stack for what is
forty lines here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

log = logging.getLogger(__name__)

SHARED_MIGRATIONS = Path(__file__).with_name("migrations")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def quote_ident(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return f'"{name}"'


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, schema="pg_catalog", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads
        )


async def create_pool(
    dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10, settings: dict[str, str] | None = None
) -> asyncpg.Pool:
    """`settings`: more PostgreSQL settings for every connection of the pool (say, synchronous_commit)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings={
            "search_path": f"{quote_ident(schema)},public",
            "application_name": f"xinfang-{schema}",
            **(settings or {}),
        },
    )
    assert pool is not None
    return pool


def migration_files(service_dir: Path) -> list[tuple[str, Path]]:
    """(version, path) of every migration for a service, shared ones first."""
    shared = [(f"shared/{p.stem}", p) for p in sorted(SHARED_MIGRATIONS.glob("*.sql"))]
    own = [(p.stem, p) for p in sorted(service_dir.glob("*.sql"))]
    return shared + own


async def migrate(conn: asyncpg.Connection, schema: str, files: Iterable[tuple[str, Path]]) -> list[str]:
    """Create the schema and apply the migrations not yet applied; returns the versions applied now."""
    ident = quote_ident(schema)
    applied_now: list[str] = []
    async with conn.transaction():
        # Two instances starting together must not both migrate.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"xinfang-migrate:{schema}")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {ident}.schema_migrations"
            " (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch(f"SELECT version FROM {ident}.schema_migrations")}
        await conn.execute(f"SET LOCAL search_path TO {ident}, public")
        for version, path in files:
            if version in done:
                continue
            await conn.execute(path.read_text(encoding="utf-8"))
            await conn.execute(f"INSERT INTO {ident}.schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
    if applied_now:
        log.info("applied migrations", extra={"schema": schema, "versions": applied_now})
    return applied_now


async def migrate_dsn(dsn: str, schema: str, service_dir: Path) -> list[str]:
    conn: Any = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, schema, migration_files(service_dir))
    finally:
        await conn.close()

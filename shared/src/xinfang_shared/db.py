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


async def _released_as_it_is(conn: asyncpg.Connection) -> None:
    """What a connection goes back to the pool with, beyond asyncpg's own (it rolls back an open transaction and
    drops the connection's listeners first): nothing. Our code leaves no session state on a pooled connection
    (settings are `SET LOCAL`, advisory locks are taken per transaction, LISTEN has connections of its own), so
    asyncpg's default reset, `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every
    release, bought nothing for a round trip and a transaction each time (two per matter in the e2e bench)."""


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    settings: dict[str, str] | None = None,
    command_timeout_s: float | None = 60.0,
) -> asyncpg.Pool:
    """`settings`: more PostgreSQL settings for every connection of the pool (say, synchronous_commit).
    `command_timeout_s`: a statement that has not answered by then raises TimeoutError (asyncpg cancels it), so
    a stuck query cannot hold a consumer or a request for ever."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout_s,
        init=_init_connection,
        reset=_released_as_it_is,
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
        # A service's role owns its schema (made for it by ensure_service_role) and may create no other: look
        # before creating, since CREATE SCHEMA IF NOT EXISTS wants the right to create one even when it exists.
        if not await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
            await conn.execute(f"CREATE SCHEMA {ident}")
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


def service_role(service: str) -> str:
    """The PostgreSQL role a service connects as (DATABASE_URL_<SERVICE>)."""
    return f"xinfang_{service}"


async def ensure_service_role(
    admin: asyncpg.Connection, service: str, password: str, *, schema: str | None = None, may_create: bool = False
) -> None:
    """As an administrator of the database (a member of the role, so it can hand it the schema): the service's
    login role with `password`, owning the service's schema and everything in it, and nothing else. Another
    service's role can neither read nor change this schema, nor this one another's (no grants are made).
    `may_create`: the role may also make schemas of its own (stats' rebuild builds into a fresh one). Idempotent;
    an existing schema owned by another role (a database from before roles) is handed over with its objects."""
    role, schema = service_role(service), schema or service
    ident, role_ident = quote_ident(schema), quote_ident(role)
    async with admin.transaction():
        await admin.execute("SELECT pg_advisory_xact_lock(hashtext('xinfang-roles'))")
        if not await admin.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role):
            await admin.execute(f"CREATE ROLE {role_ident} LOGIN")
        # ALTER ROLE takes no parameters: the password goes in as a quoted literal.
        literal = await admin.fetchval("SELECT quote_literal($1)", password)
        await admin.execute(f"ALTER ROLE {role_ident} LOGIN PASSWORD {literal}")
        if not await admin.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", role):
            await admin.execute(f"GRANT {role_ident} TO current_user")
        await admin.execute(f"CREATE SCHEMA IF NOT EXISTS {ident} AUTHORIZATION {role_ident}")
        await admin.execute(f"ALTER SCHEMA {ident} OWNER TO {role_ident}")
        for kind, name in await admin.fetch(_OWNED_BY_OTHERS, schema, role):
            await admin.execute(f"ALTER {kind} {name} OWNER TO {role_ident}")
        database = quote_ident(await admin.fetchval("SELECT current_database()"))
        verb = "GRANT" if may_create else "REVOKE"
        await admin.execute(f"{verb} CREATE ON DATABASE {database} {'TO' if may_create else 'FROM'} {role_ident}")


# The objects of a schema not owned by `role`, with the ALTER that hands each over (tables, views and sequences
# but the sequences a table owns, which follow it; functions).
_OWNED_BY_OTHERS = """
SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
       ELSE 'TABLE' END, format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND pg_get_userbyid(c.relowner) <> $2
  AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT 'FUNCTION', format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = $1 AND pg_get_userbyid(p.proowner) <> $2
"""

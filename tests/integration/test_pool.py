"""The services' connection pools (xinfang_shared.db.create_pool) give a connection back as it is, without asyncpg's
reset statement: a release costs no round trip and no transaction. What a connection is used for leaves nothing
behind all the same: a transaction left open is rolled back, and a `SET LOCAL` ends with its transaction."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg

from tests.integration.conftest import committed
from xinfang_shared.db import create_pool, migrate_dsn

RELEASES = 30


async def test_a_release_costs_no_statement_and_leaves_no_state(database: str, stack: dict[str, str]) -> None:
    schema = f"pool_{uuid.uuid4().hex[:8]}"
    await migrate_dsn(database, schema, Path("/nonexistent"))
    name = database.rsplit("/", 1)[1]
    before = await committed(stack["DATABASE_URL"], name)
    pool = await create_pool(database, schema, min_size=1, max_size=1)
    try:
        for _ in range(RELEASES):
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT 1") == 1
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL work_mem = '77MB'")
        # Left open (a handler that forgot to finish): rolled back on release, its row not kept.
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE probe (n int)")
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO probe VALUES (1)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW work_mem") != "77MB"
            assert await conn.fetchval("SELECT count(*) FROM probe") == 0
            assert not conn.is_in_transaction()
    finally:
        await pool.close()
    admin = await asyncpg.connect(database)
    try:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await admin.close()
    # The SELECTs, the SET LOCAL's and the table's transactions, the pool's start-up: the default reset would have
    # added one transaction per release.
    commits = await committed(stack["DATABASE_URL"], name) - before
    assert commits <= RELEASES + 12, commits

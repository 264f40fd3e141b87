"""Command line every service exposes: `xinfang-<service> serve` (default) or `xinfang-<service> migrate`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
import uvicorn

from .db import migrate_dsn
from .logging import configure_logging
from .settings import ServiceSettings

T = TypeVar("T")


def on_database(settings: ServiceSettings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `work` on one connection to the service's schema (an administrator's command)."""

    async def go() -> T:
        conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": settings.db_schema})
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def run(*, settings: ServiceSettings, app: str, migrations: Path) -> None:
    """`app` names a factory, "package.module:create_app"."""
    parser = argparse.ArgumentParser(prog=f"xinfang-{settings.service_name}")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args()
    if args.command == "migrate":
        configure_logging(settings.service_name, settings.log_level, settings.log_format)
        asyncio.run(migrate_dsn(settings.database_url, settings.db_schema, migrations))
        return
    uvicorn.run(
        app,
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=20,
        # The client address is the TCP peer; a service that trusts a proxy's X-Forwarded-For says which proxies
        # in its own settings (intake's trusted_proxies), so uvicorn must not rewrite the address first.
        proxy_headers=False,
    )

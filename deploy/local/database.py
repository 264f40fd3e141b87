"""Gives each service its own PostgreSQL role, owning its schema and nothing else, with the password of its
DATABASE_URL_<SERVICE> in .local/credentials.env (credentials.sh writes them). Run as the administrator
(DATABASE_URL). Idempotent: a second run changes nothing; a database from before the roles has its schemas handed
over. Usage: uv run python deploy/local/database.py"""

from __future__ import annotations

import asyncio
import os
import sys
from urllib.parse import unquote, urlsplit

import asyncpg

from xinfang_shared.contracts.topics import SERVICES
from xinfang_shared.db import ensure_service_role, service_role

# The Kafka services and the console (which has no Kafka principal, hence not in the registry's SERVICES).
DATABASE_USERS = (*SERVICES, "console")
# Stats' rebuild (xinfang-stats rebuild) builds the figures into a schema of its own, made afresh each time.
MAY_CREATE = {"stats"}


async def main() -> None:
    admin = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        for service in DATABASE_USERS:
            dsn = os.environ[f"DATABASE_URL_{service.upper()}"]
            url = urlsplit(dsn)
            if url.username != service_role(service) or not url.password:
                sys.exit(f"DATABASE_URL_{service.upper()} must name the role {service_role(service)} with a password")
            await ensure_service_role(admin, service, unquote(url.password), may_create=service in MAY_CREATE)
    finally:
        await admin.close()
    print(
        f"[xinfang] database: {len(DATABASE_USERS)} services, each its own role owning only its schema", file=sys.stderr
    )


if __name__ == "__main__":
    asyncio.run(main())

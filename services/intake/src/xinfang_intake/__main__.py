"""xinfang-intake serve | migrate | keys add --system NAME --channels letter,online"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from xinfang_shared.cli import run
from xinfang_shared.contracts.reference import Channel

from .channel_keys import add_key
from .settings import IntakeSettings

ASGI_APP = "xinfang_intake.app:create_app"


def _add_key(settings: IntakeSettings, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="xinfang-intake keys add")
    parser.add_argument("--system", required=True, help="the channel system's name, e.g. letters-registry")
    parser.add_argument("--channels", required=True, help="comma-separated: letter,visit,online,mailbox")
    args = parser.parse_args(argv)
    channels = [Channel(c.strip()) for c in args.channels.split(",") if c.strip()]

    async def go() -> str:
        conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": settings.db_schema})
        try:
            return await add_key(conn, system=args.system, channels=channels)
        finally:
            await conn.close()

    print(asyncio.run(go()))  # noqa: T201 - the key is shown once, here, and stored only as a hash


def main() -> None:
    settings = IntakeSettings()
    if sys.argv[1:3] == ["keys", "add"]:
        _add_key(settings, sys.argv[3:])
        return
    from .app import MIGRATIONS

    run(settings=settings, app=ASGI_APP, migrations=MIGRATIONS)


if __name__ == "__main__":
    main()

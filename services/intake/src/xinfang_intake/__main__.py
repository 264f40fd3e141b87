"""xinfang-intake serve | migrate | keys add --system NAME --channels letter,online [--key KEY]
| keys revoke --system NAME"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from xinfang_shared.cli import on_database, run
from xinfang_shared.contracts.reference import Channel

from .channel_keys import add_key, revoke_key
from .settings import IntakeSettings

ASGI_APP = "xinfang_intake.app:create_app"
T = TypeVar("T")


def _add_key(settings: IntakeSettings, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="xinfang-intake keys add")
    parser.add_argument("--system", required=True, help="the channel system's name, e.g. letters-registry")
    parser.add_argument("--channels", required=True, help="comma-separated: letter,visit,online,mailbox")
    parser.add_argument(
        "--key",
        default=os.environ.get("CHANNEL_KEY") or None,
        help="the key to give it (default: the environment's CHANNEL_KEY, else a new random one, printed): a setup"
        " that keeps its keys elsewhere (the local stack's credentials) makes it again with the same key",
    )
    args = parser.parse_args(argv)
    channels = [Channel(c.strip()) for c in args.channels.split(",") if c.strip()]
    key = on_database(settings, lambda conn: add_key(conn, system=args.system, channels=channels, key=args.key))
    if args.key:
        print(f"{args.system} has the key given, for {','.join(c.value for c in channels)}")  # noqa: T201
    else:
        print(key)  # noqa: T201 - the key is shown once, here, and stored only as a hash


def _revoke_key(settings: IntakeSettings, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="xinfang-intake keys revoke")
    parser.add_argument("--system", required=True, help="the channel system whose key to revoke")
    args = parser.parse_args(argv)
    if not on_database(settings, lambda conn: revoke_key(conn, system=args.system)):
        sys.exit(f"{args.system} has no key to revoke (no such system, or its key is revoked already)")
    print(  # noqa: T201 - the command's answer
        f"revoked the key of {args.system}: every instance refuses it within"
        f" {settings.channel_keys_refresh_s:g} s (CHANNEL_KEYS_REFRESH_S); `keys add` gives it a new one"
    )


COMMANDS: dict[tuple[str, ...], Callable[[IntakeSettings, list[str]], None]] = {
    ("keys", "add"): _add_key,
    ("keys", "revoke"): _revoke_key,
}


def main() -> None:
    settings = IntakeSettings()
    command = COMMANDS.get(tuple(sys.argv[1:3]))
    if command is not None:
        command(settings, sys.argv[3:])
        return
    from .app import MIGRATIONS

    run(settings=settings, app=ASGI_APP, migrations=MIGRATIONS)


if __name__ == "__main__":
    main()

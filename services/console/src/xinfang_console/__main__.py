"""xinfang-console serve | migrate
xinfang-console accounts add USER --role clerk|head|leader [--office OFFICE] [--name NAME]   (prints a password)
xinfang-console accounts reset USER                                                          (prints a new one)
xinfang-console accounts disable USER | enable USER | list
xinfang-console accounts ensure-dev    (make up: the accounts STAFF_USER_<office>_<role> / STAFF_PASSWORD_… and
                                       STAFF_USER_leader name, made if missing; idempotent)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

import asyncpg

from xinfang_shared.cli import on_database, run
from xinfang_shared.contracts.reference import Office
from xinfang_shared.staff import Role

from . import accounts
from .settings import ConsoleSettings


def _accounts(settings: ConsoleSettings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xinfang-console accounts")
    parser.add_argument("command", choices=["add", "reset", "disable", "enable", "list", "ensure-dev"])
    parser.add_argument("user", nargs="?")
    parser.add_argument("--role", choices=[r.value for r in Role])
    parser.add_argument("--office", choices=[o.value for o in Office])
    parser.add_argument("--name", default="")
    args = parser.parse_args(argv)
    if args.command not in ("list", "ensure-dev") and not args.user:
        parser.error("a user name is needed")
    office = Office(args.office) if args.office else None
    try:
        if args.command == "add":
            if not args.role:
                parser.error("--role is needed")
            password = accounts.new_password()
            on_database(
                settings, lambda conn: accounts.add(conn, args.user, Role(args.role), office, password, args.name)
            )
            sys.stdout.write(f"{args.user}: {password}\n")
        elif args.command == "ensure-dev":
            added = on_database(settings, lambda conn: _ensure_dev(conn, os.environ))
            sys.stdout.write(f"[xinfang] console: {added} dev staff accounts added\n")
        elif args.command == "reset":
            password = accounts.new_password()
            on_database(settings, lambda conn: accounts.set_password(conn, args.user, password))
            sys.stdout.write(f"{args.user}: {password}\n")
        elif args.command in ("disable", "enable"):
            on_database(settings, lambda conn: accounts.disable(conn, args.user, args.command == "disable"))
            sys.stdout.write(f"{args.user}: {args.command}d\n")
        else:
            for account, disabled in on_database(settings, accounts.listed):
                office_text = account.office.value if account.office else "-"
                state = " (disabled)" if disabled else ""
                sys.stdout.write(f"{account.username}\t{account.role.value}\t{office_text}{state}\n")
    except accounts.AccountRefused as exc:
        sys.stderr.write(f"refused: {exc}\n")
        return 2
    return 0


def dev_accounts(environ: Mapping[str, str]) -> list[tuple[str, Role, Office | None, str]]:
    """(user, role, office, password) of the dev staff the environment names (credentials.sh writes them)."""
    wanted: list[tuple[str, Role, Office | None]] = [
        (f"{o.value.replace('-', '_')}_{r.value}", r, o) for o in Office for r in (Role.CLERK, Role.HEAD)
    ]
    wanted.append(("leader", Role.LEADER, None))
    return [
        (environ[f"STAFF_USER_{key}"], role, office, environ[f"STAFF_PASSWORD_{key}"])
        for key, role, office in wanted
        if f"STAFF_USER_{key}" in environ and f"STAFF_PASSWORD_{key}" in environ
    ]


async def _ensure_dev(conn: asyncpg.Connection, environ: Mapping[str, str]) -> int:
    known = {account.username for account, _ in await accounts.listed(conn)}
    added = 0
    for user, role, office, password in dev_accounts(environ):
        if user not in known:
            await accounts.add(conn, user, role, office, password)
            added += 1
    return added


def main() -> None:
    settings = ConsoleSettings()
    if sys.argv[1:2] == ["accounts"]:
        sys.exit(_accounts(settings, sys.argv[2:]))
    from .app import MIGRATIONS

    run(settings=settings, app="xinfang_console.app:create_app", migrations=MIGRATIONS)


if __name__ == "__main__":
    main()

"""``gatewayd central …``: serve the API, migrate, create admin keys, seed demo data.

``register`` adds the ``central`` subcommand to the lead's argparse root; each parser's
``func`` takes the parsed namespace and returns the exit code (2 for configuration errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from . import logs
from .clock import SystemClock
from .config import DEFAULT_DB, ENV_PREFIX, CentralSettings, SettingsError, load_settings
from .db import Database
from .errors import CentralError

_COMMON = ("db", "config")


def _add_common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Sub-commands repeat the options with SUPPRESS so a value given before the
    # sub-command is not overwritten by the sub-parser's default.
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--db",
        default=default,
        help=f"database URL: sqlite:///file.db or postgresql://… (env {ENV_PREFIX}DB, "
        f"default {DEFAULT_DB})",
    )
    parser.add_argument("--config", default=default, help="TOML file with settings (field = value)")


def settings_from(args: argparse.Namespace) -> CentralSettings:
    """CLI > environment > config file > defaults."""
    cli = {k: v for k, v in vars(args).items() if k not in ("func", "config")}
    return load_settings(cli, os.environ, getattr(args, "config", None))


Action = Callable[[CentralSettings], Coroutine[Any, Any, int]]


def _run(args: argparse.Namespace, action: Action) -> int:
    try:
        settings = settings_from(args)
        logs.configure(settings.log_level, json=False)
        return asyncio.run(action(settings))
    except SettingsError as exc:
        print(f"gatewayd central: {exc.message}", file=sys.stderr)
        return 2
    except CentralError as exc:
        print(f"gatewayd central: {exc.message}", file=sys.stderr)
        return 1


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    try:
        settings = settings_from(args)
        settings.key_for("check")  # fail now, not in every worker
    except SettingsError as exc:
        print(f"gatewayd central: {exc.message}", file=sys.stderr)
        return 2
    return serve(settings)


async def _migrate(settings: CentralSettings) -> int:
    from .migrate import current_revision, upgrade

    db = Database.from_url(settings.db)
    try:
        await upgrade(db)
        print(f"database at revision {await current_revision(db)}")
    finally:
        await db.close()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    return _run(args, _migrate)


def cmd_admin_key_create(args: argparse.Namespace) -> int:
    async def create(settings: CentralSettings) -> int:
        from .auth import create_admin_key

        db = Database.from_url(settings.db)
        try:
            key_id, key = await create_admin_key(db, args.name, SystemClock())
        finally:
            await db.close()
        print(f"admin key {key_id} ({args.name}); shown once:", file=sys.stderr)
        print(key)
        return 0

    return _run(args, create)


def _read_password(from_stdin: bool) -> str:
    """The new password: one line of stdin (scripts), or typed twice at a prompt."""
    import getpass

    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SettingsError("the passwords differ", code="password_mismatch")
    return first


def cmd_admin_user_add(args: argparse.Namespace) -> int:
    """``gatewayd central admin-user add NAME``: a dashboard login (argon2-hashed password)."""

    async def add(settings: CentralSettings) -> int:
        from .admin_users import add_admin_user

        password = await asyncio.to_thread(_read_password, args.password_stdin)
        db = Database.from_url(settings.db)
        try:
            user_id = await add_admin_user(db, SystemClock(), args.name, password)
        finally:
            await db.close()
        print(f"admin user {user_id} ({args.name}) added")
        return 0

    return _run(args, add)


def cmd_seed(args: argparse.Namespace) -> int:
    if not args.demo and args.members is None:
        print("gatewayd central seed: give --demo and/or --members N", file=sys.stderr)
        return 2

    async def run(settings: CentralSettings) -> int:
        from .migrate import upgrade
        from .seed import seed

        db = Database.from_url(settings.db)
        try:
            await upgrade(db)
            result = await seed(db, settings, SystemClock(), members_count=args.members or 1000)
        finally:
            await db.close()
        data: dict[str, Any] = result.as_dict()
        if args.keys_out:
            await asyncio.to_thread(_write_private, args.keys_out, json.dumps(data, indent=2))
            print(f"seeded {result.members} members; keys in {args.keys_out}")
        else:
            print(json.dumps(data, indent=2))
        return 0

    return _run(args, run)


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    """Recompute every cached balance from the ledger: exit 0 when all agree, 1 otherwise."""

    async def verify(settings: CentralSettings) -> int:
        from .ledger import verify as verify_ledger

        db = Database.from_url(settings.db)
        try:
            mismatches = await verify_ledger(db)
        finally:
            await db.close()
        for mismatch in mismatches[: args.limit]:
            print(json.dumps(mismatch.as_dict()))
        print(f"ledger verify: {len(mismatches)} mismatches", file=sys.stderr)
        return 1 if mismatches else 0

    return _run(args, verify)


def _write_private(path: str, text: str) -> None:
    """Write a file only its owner can read (it holds API keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``central`` and its sub-commands to the gatewayd command line."""
    central = subparsers.add_parser(
        "central",
        help="the chain's central membership API",
        description="Without a sub-command: serve the central API.",
    )
    _add_common(central, top=True)
    central.add_argument("--listen", help="HOST:PORT to serve on (default 127.0.0.1:8700)")
    central.add_argument(
        "--workers", type=_positive_int, help="processes sharing the port (SO_REUSEPORT)"
    )
    central.add_argument("--tls-cert", help="PEM certificate (chain) for HTTPS")
    central.add_argument("--tls-key", help="PEM private key for HTTPS")
    central.add_argument("--identify-rate", type=float, help="identify requests/s per terminal")
    central.add_argument("--identify-burst", type=int, help="identify burst per terminal")
    central.add_argument("--log-level", help="debug, info, warning, error")
    central.set_defaults(func=cmd_serve)
    commands = central.add_subparsers(title="sub-commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the API (the default)")
    _add_common(serve, top=False)
    serve.set_defaults(func=cmd_serve)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    _add_common(migrate, top=False)
    migrate.set_defaults(func=cmd_migrate)

    admin_key = commands.add_parser("admin-key", help="admin API keys")
    admin_commands = admin_key.add_subparsers(title="admin-key commands", metavar="COMMAND")
    create = admin_commands.add_parser("create", help="create an admin key and print it once")
    _add_common(create, top=False)
    create.add_argument("--name", default="admin", help="a label for the key")
    create.set_defaults(func=cmd_admin_key_create)
    admin_key.set_defaults(func=lambda _args: _usage(admin_key))

    admin_user = commands.add_parser("admin-user", help="dashboard users (name + password)")
    user_commands = admin_user.add_subparsers(title="admin-user commands", metavar="COMMAND")
    add_user = user_commands.add_parser("add", help="add a dashboard admin user")
    _add_common(add_user, top=False)
    add_user.add_argument("name", help="login name (1-64 of A-Z a-z 0-9 _ . -)")
    add_user.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin, no prompt"
    )
    add_user.set_defaults(func=cmd_admin_user_add)
    admin_user.set_defaults(func=lambda _args: _usage(admin_user))

    seed = commands.add_parser("seed", help="fill a demo chain (migrates first)")
    _add_common(seed, top=False)
    seed.add_argument(
        "--demo", action="store_true", help="3 stores, terminals, gateways, 1 000 members"
    )
    seed.add_argument(
        "--members", type=_positive_int, help="number of members (benchmarks: 1000000)"
    )
    seed.add_argument("--keys-out", help="write keys and samples to this JSON file")
    seed.set_defaults(func=cmd_seed)

    ledger = commands.add_parser("ledger", help="the programme's ledger")
    ledger_commands = ledger.add_subparsers(title="ledger commands", metavar="COMMAND")
    verify = ledger_commands.add_parser(
        "verify", help="recompute cached balances from the entries (exit 1 on any mismatch)"
    )
    _add_common(verify, top=False)
    verify.add_argument(
        "--limit", type=_positive_int, default=100, help="mismatches to print (default 100)"
    )
    verify.set_defaults(func=cmd_ledger_verify)
    ledger.set_defaults(func=lambda _args: _usage(ledger))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    return 2

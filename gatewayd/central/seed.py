"""Demo and benchmark data: ``gatewayd central seed --demo`` / ``--members N``.

Members and cards go in as bulk inserts (executemany on SQLite, COPY on PostgreSQL) with
explicit ids, never as ORM objects: a million members must load in well under two minutes.
Numbers are a per-run random salt plus the row number, so they are unique without a lookup
and still carry their Luhn check digits. Demo members share one precomputed password hash
(argon2 per member would take hours for a million).
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.protocols.checks import gb11643_check_char, luhn_check_digit

from .auth import create_admin_key
from .clock import Clock, to_millis
from .codes import ID_KEY_PURPOSE, keyed_hash
from .config import CentralSettings
from .db import Database
from .errors import Conflict
from .ledger import opening_entries_sql
from .logs import get_logger
from .members import hash_password
from .models import cards, members, payment_bindings, stores
from .recharge import seed_demo_programme
from .registry import Registry
from .schemas import GatewayCreate, StoreCreate, TerminalCreate

log = get_logger(__name__)
BATCH: Final = 20_000
DEMO_PASSWORD: Final = "demo-pass"
STORES: Final = (
    ("store-1", "Bakery Xuhui"),
    ("store-2", "Bakery Pudong"),
    ("store-3", "Bakery Jing'an"),
)
TERMINALS: Final = (
    ("pos-1", "POS lane 1", "pos"),
    ("pos-2", "POS lane 2", "pos"),
    ("kiosk-1", "Self-checkout", "kiosk"),
)
LEVELS: Final = ("default", "silver", "gold", "platinum")


@dataclass
class SeedResult:
    """What a seeded chain needs to be used: keys (shown once) and a few sample tokens."""

    admin_key: str
    gateways: dict[str, dict[str, str]]
    stores: list[str]
    terminals: list[str]
    members: int
    samples: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "admin_key": self.admin_key,
            "gateways": self.gateways,
            "stores": self.stores,
            "terminals": self.terminals,
            "members": self.members,
            "password": DEMO_PASSWORD,
            "samples": self.samples,
        }


def _with_luhn(payload: str) -> str:
    return payload + luhn_check_digit(payload)


def demo_id_number(n: int) -> str:
    """A valid GB 11643 ID number, distinct for each ``n`` (region 310104, Shanghai Xuhui)."""
    born = dt.date(1940, 1, 1) + dt.timedelta(days=n // 1000)
    body = f"310104{born:%Y%m%d}{n % 1000:03d}"
    return body + gb11643_check_char(body)


def _legacy_code(salt: str, n: int) -> str:
    letters = []
    for _ in range(8):
        n, digit = divmod(n, 26)
        letters.append(string.ascii_uppercase[digit])
    return salt + "".join(reversed(letters))


class _Rows:
    """Generates the bulk rows for members 1..count (ids are explicit)."""

    def __init__(self, count: int, now: int, id_key: bytes, password_hash: str) -> None:
        self.count = count
        self.now = now
        self.id_key = id_key
        self.password_hash = password_hash
        card_salt, code_salt = secrets.randbelow(10**6), secrets.randbelow(10**9)
        # Secondary cards use a second salt, different from the first, so no number repeats.
        self.card_salts = (f"{card_salt:06d}", f"{(card_salt + 500_000) % 10**6:06d}")
        self.code_salts = (f"{code_salt:09d}", f"{(code_salt + 500_000_000) % 10**9:09d}")
        self.uid_salt = secrets.token_hex(2).upper()
        self.legacy_salt = "".join(secrets.choice(string.ascii_uppercase) for _ in range(28))
        self.openid_salt = secrets.token_hex(4)

    def member(self, n: int) -> dict[str, Any]:
        id_number = demo_id_number(n // 10) if n % 10 == 0 else None
        return {
            "id": n,
            "name": f"Member {n:07d}",
            "phone": f"139{n:08d}",
            "gender": ("female", "male")[n % 2],
            "birthday": dt.date(1970 + n % 40, 1 + n % 12, 1 + n % 28),
            "level": LEVELS[n % len(LEVELS)],
            "id_hash": keyed_hash(self.id_key, id_number) if id_number else None,
            "id_last4": id_number[-4:] if id_number else None,
            "address": None,
            "email": None,
            "notes": None,
            "password_hash": self.password_hash,
            "points": n % 5000,
            "balance_fen": (n % 100) * 1000,
            "active": True,
            "created_at": self.now,
            "updated_at": self.now,
        }

    def cards_of(self, n: int, next_card_id: int) -> list[dict[str, Any]]:
        kind = "ic" if n % 7 == 0 else "barcode"
        main = {
            "id": next_card_id,
            "member_id": n,
            "number": _with_luhn(f"8{self.card_salts[0]}{n:08d}"),
            "kind": kind,
            "is_main": True,
            "checked": True,
            "member_code": _with_luhn(f"96{self.code_salts[0]}{n:08d}"),
            "legacy_code": _legacy_code(self.legacy_salt, n) if n % 50 == 0 else None,
            "ic_uid": f"{self.uid_salt}{n:08X}" if kind == "ic" else None,
            "active": True,
            "created_at": self.now,
            "last_used_at": None,
        }
        rows = [main]
        if n % 5 == 0:  # a secondary card: the virtual WeChat member card
            rows.append(
                {
                    **main,
                    "id": next_card_id + 1,
                    "number": _with_luhn(f"8{self.card_salts[1]}{n:08d}"),
                    "kind": "virtual",
                    "is_main": False,
                    "member_code": _with_luhn(f"96{self.code_salts[1]}{n:08d}"),
                    "legacy_code": None,
                    "ic_uid": None,
                }
            )
        return rows

    def binding(self, n: int, card_id: int) -> dict[str, Any] | None:
        if n % 3 != 0:
            return None
        return {
            "provider": "wechat",
            "account_id": f"o{self.openid_salt}{n:09d}",
            "member_id": n,
            "card_id": card_id,
            "created_at": self.now,
        }

    def batches(self) -> Iterator[tuple[list[dict[str, Any]], ...]]:
        card_id = 1
        for start in range(1, self.count + 1, BATCH):
            member_rows, card_rows, binding_rows = [], [], []
            for n in range(start, min(start + BATCH, self.count + 1)):
                member_rows.append(self.member(n))
                new_cards = self.cards_of(n, card_id)
                card_rows.extend(new_cards)
                binding = self.binding(n, card_id)
                if binding is not None:
                    binding_rows.append(binding)
                card_id += len(new_cards)
            yield member_rows, card_rows, binding_rows


async def _bulk(conn: AsyncConnection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        columns = list(rows[0])
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table.name, records=[tuple(r[c] for c in columns) for r in rows], columns=columns
        )
    else:
        await conn.execute(table.insert(), list(rows))


async def bulk_members(db: Database, settings: CentralSettings, clock: Clock, count: int) -> None:
    """Insert ``count`` members with cards and WeChat bindings into an empty database."""
    async with db.write() as conn:
        existing = await conn.scalar(sa.select(sa.func.count()).select_from(members))
        if existing:
            raise Conflict(f"the database already has {existing} members", code="not_empty")
        rows = _Rows(
            count,
            to_millis(clock.now()),
            settings.key_for(ID_KEY_PURPOSE),
            hash_password(DEMO_PASSWORD),
        )
        for member_rows, card_rows, binding_rows in rows.batches():
            await _bulk(conn, members, member_rows)
            await _bulk(conn, cards, card_rows)
            await _bulk(conn, payment_bindings, binding_rows)
        # The seeded balances as opening ledger entries, so `ledger verify` agrees.
        await opening_entries_sql(conn)
        if conn.dialect.name == "postgresql":
            for table in ("members", "cards", "payment_bindings"):
                await conn.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"GREATEST((SELECT max(id) FROM {table}), 1))"
                    )
                )
    log.info("members_seeded", count=count)


async def seed(
    db: Database, settings: CentralSettings, clock: Clock, *, members_count: int
) -> SeedResult:
    """A demo chain: 3 stores with terminals and one gateway each, members, keys."""
    async with db.read() as conn:
        for table in (stores, members):
            existing = await conn.scalar(sa.select(sa.func.count()).select_from(table))
            if existing:
                raise Conflict(
                    f"the database already has {existing} {table.name}; seed needs an empty one",
                    code="not_empty",
                )
    registry = Registry(db, clock, settings.stale_after)
    gateway_keys: dict[str, dict[str, str]] = {}
    terminal_ids: list[str] = []
    for index, (store_id, name) in enumerate(STORES, start=1):
        await registry.create_store(StoreCreate(id=store_id, name=name))
        for terminal_id, terminal_name, kind in TERMINALS:
            await registry.create_terminal(
                store_id,
                TerminalCreate(id=terminal_id, name=terminal_name, kind=kind),  # type: ignore[arg-type]
            )
            terminal_ids.append(f"{store_id}/{terminal_id}")
        gateway_id = f"gw-{index}"
        _, key = await registry.create_gateway(
            GatewayCreate(id=gateway_id, store=store_id, name=f"{name} gateway")
        )
        gateway_keys[gateway_id] = {"store": store_id, "api_key": key}
    _, admin_key = await create_admin_key(db, "demo admin", clock)
    await bulk_members(db, settings, clock, members_count)
    await seed_demo_programme(db, clock, LEVELS)
    async with db.read() as conn:
        sample = (
            await conn.execute(
                sa.select(cards.c.member_code, cards.c.number, members.c.phone)
                .join(members, members.c.id == cards.c.member_id)
                .where(cards.c.is_main)
                .order_by(cards.c.id)
                .limit(5)
            )
        ).all()
    return SeedResult(
        admin_key=admin_key,
        gateways=gateway_keys,
        stores=[s for s, _ in STORES],
        terminals=terminal_ids,
        members=members_count,
        samples={
            "member_codes": [r.member_code for r in sample],
            "card_numbers": [r.number for r in sample],
            "phones": [r.phone for r in sample],
        },
    )

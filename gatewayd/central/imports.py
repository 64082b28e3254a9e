"""Import members and historic sales from Excel (.xlsx) or CSV, checked row by row first.

The whole file is parsed and every row validated before anything is written; the answer
lists every rejected row (its sheet row number and each reason). Then:

* ``dry_run``: nothing is written;
* default (all-or-nothing): any rejected row means nothing is written (422), else every row
  is written in one transaction;
* ``partial``: the good rows are written, the rejected ones reported.

CSV text may be UTF-8 (with or without the BOM Excel writes) or GB18030 (a superset of GBK,
what Chinese Excel's "CSV" export produces). Headers are the API's field names or their
usual Chinese labels; custom fields are ``custom.<key>`` columns. Members are written as
``POST /v1/members`` would (ID numbers only as keyed hashes, opening ledger entries) but
without ``registered`` events: an import sends no welcome SMS. Sales become orders of kind
``import`` (no ledger postings: imported balances already include their effect) and count
as visits and spending for search and reports.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import sqlalchemy as sa
from openpyxl import load_workbook
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.protocols.checks import luhn_valid

from . import custom_fields, ledger
from .clock import Clock, to_millis
from .codes import keyed_hash, new_member_code
from .db import Database
from .errors import Conflict, Invalid
from .models import cards, members, stores
from .models_members_ext import member_created, order_committed
from .models_programme import orders
from .pricing import Quote
from .schemas import ID_PATTERN, MemberCreate, normalise_phone

ID_PATTERN_RE: Final = re.compile(ID_PATTERN)
MAX_BYTES: Final = 8 * 1024 * 1024
MAX_ROWS: Final = 20_000
MAX_REASONS: Final = 10_000
ALIASES: Final = {
    "姓名": "name", "手机": "phone", "手机号": "phone", "电话": "phone", "性别": "gender",
    "生日": "birthday", "等级": "level", "会员等级": "level", "身份证": "id_number",
    "身份证号": "id_number", "地址": "address", "邮箱": "email", "备注": "notes",
    "积分": "points", "余额": "balance_yuan", "卡号": "card_number", "门店": "store",
    "日期": "date", "时间": "date", "金额": "amount_yuan", "单号": "ref",
}  # fmt: skip
GENDERS: Final = {"男": "male", "女": "female", "其他": "other"}
MEMBER_COLUMNS: Final = frozenset(MemberCreate.model_fields) - {"password", "custom"} | {
    "balance_yuan",
    "card_number",
}
SALE_COLUMNS: Final = frozenset(
    {"ref", "store", "date", "amount_fen", "amount_yuan", "member_id", "phone", "card_number"}
)


class ImportRejected(Invalid):
    """All-or-nothing import with rejected rows: nothing was written (details list them)."""

    default_code = "import_rejected"


@dataclass
class Outcome:
    rows: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    applied: int = 0

    def reject(self, row: int, reasons: list[str]) -> None:
        if len(self.rejected) < MAX_REASONS:
            self.rejected.append({"row": row, "reasons": reasons})

    def body(self, *, dry_run: bool, partial: bool) -> dict[str, Any]:
        return {
            "dry_run": dry_run,
            "partial": partial,
            "rows": self.rows,
            "accepted": self.rows - len(self.rejected),
            "applied": self.applied,
            "rejected": self.rejected,
        }


def decode_csv(raw: bytes) -> str:
    """UTF-8 (BOM or not), else GB18030; anything else is refused."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise Invalid("CSV must be UTF-8 or GB18030 text", code="bad_file") from exc


def read_table(raw: bytes) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    """Header and ``(sheet row number, cells)`` rows of an .xlsx (first sheet) or a CSV."""
    if len(raw) > MAX_BYTES:
        raise Invalid(f"file over {MAX_BYTES} bytes", code="payload_too_large")
    if raw.startswith(b"PK\x03\x04"):
        try:
            wb = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
        except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
            raise Invalid("not a readable .xlsx workbook", code="bad_file") from exc
        sheet = wb.worksheets[0]
        table = [list(r) for r in sheet.iter_rows(values_only=True, max_row=MAX_ROWS + 2)]
        wb.close()
    else:
        try:
            table = [list(r) for r in csv.reader(io.StringIO(decode_csv(raw)))]
        except csv.Error as exc:
            raise Invalid(f"not a readable CSV: {exc}", code="bad_file") from exc
    if not table:
        raise Invalid("the file is empty", code="bad_file")
    header = [
        ALIASES.get(str(h).strip(), str(h).strip()) if h is not None else "" for h in table[0]
    ]
    rows = [
        (n, row)
        for n, row in enumerate(table[1:], start=2)
        if any(c is not None and str(c).strip() != "" for c in row)
    ]
    if len(rows) > MAX_ROWS:
        raise Invalid(f"more than {MAX_ROWS} rows: split the file", code="too_many_rows")
    return header, rows


def _check_header(header: list[str], allowed: frozenset[str], custom: set[str]) -> None:
    unknown = [
        h for h in header if h and h not in allowed and h.removeprefix("custom.") not in custom
    ]
    if unknown:
        raise Invalid(f"unknown columns: {', '.join(unknown)[:200]}", code="bad_header")
    if len(set(header)) != len(header):
        raise Invalid("a column appears twice", code="bad_header")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a phone number Excel stored as a number
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    return text or None


def _integer(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = _text(value) or ""
    if not text.lstrip("-").isdigit():
        raise ValueError(f"{name}: must be a whole number")
    return int(text)


def _yuan(value: Any, name: str) -> int:
    """Yuan with at most 2 decimals, as fen (never through a float)."""
    text = _text(value) or ""
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"{name}: must be an amount in yuan") from exc
    fen = amount * 100
    if not amount.is_finite() or fen != fen.to_integral_value():
        raise ValueError(f"{name}: at most 2 decimals")
    return int(fen)


def _custom_cell(definition: custom_fields.Definition, value: Any) -> custom_fields.Scalar:
    """A cell as the JSON type the field takes (then checked by ``custom_fields.coerce``)."""
    text = _text(value)
    if text is None:
        return None
    if definition.type == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        try:
            number = Decimal(text)
        except InvalidOperation:
            return text  # refused by coerce with the usual message
        return int(number) if number == number.to_integral_value() else float(number)
    if definition.type == "boolean":
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "是"):
            return True
        if lowered in ("false", "0", "no", "否"):
            return False
        return text
    return text


def _reasons(exc: Exception) -> list[str]:
    if isinstance(exc, ValidationError):
        return [
            f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        ]
    return [str(exc.args[0]) if exc.args else type(exc).__name__]


@dataclass
class MemberRow:
    line: int
    data: MemberCreate
    custom: dict[str, custom_fields.Scalar]
    card_number: str | None


def _member_row(
    line: int, cells: dict[str, Any], defs: dict[str, custom_fields.Definition]
) -> MemberRow:
    body: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for name, value in cells.items():
        if name.startswith("custom.") or name in defs:
            key = name.removeprefix("custom.")
            custom[key] = _custom_cell(defs[key], value)
        elif name in ("points", "balance_fen"):
            if _text(value) is not None:
                body[name] = _integer(value, name)
        elif name == "balance_yuan":
            if _text(value) is not None:
                body["balance_fen"] = _yuan(value, name)
        elif name != "card_number":
            text = _text(value)
            if text is not None:
                body[name] = GENDERS.get(text, text) if name == "gender" else text
    data = MemberCreate.model_validate(body)
    checked = custom_fields.validate(defs, custom, creating=True)
    card = _text(cells.get("card_number"))
    if card is not None and not (card.isalnum() and len(card) <= 40):
        raise ValueError("card_number: at most 40 letters and digits")
    return MemberRow(line=line, data=data, custom=checked, card_number=card)


class Importer:
    """Parse, check and (unless dry-run) apply member and sales files."""

    def __init__(self, db: Database, clock: Clock, id_key: bytes) -> None:
        self._db = db
        self._clock = clock
        self._id_key = id_key

    def _id_hash(self, id_number: str) -> str:
        """As ``MemberService.id_hash``: the keyed hash is all that is stored."""
        return keyed_hash(self._id_key, id_number.upper())

    async def members(self, raw: bytes, *, dry_run: bool, partial: bool) -> dict[str, Any]:
        header, table = read_table(raw)
        async with self._db.read() as conn:
            defs = await custom_fields.definitions(conn, "member")
        _check_header(header, MEMBER_COLUMNS, set(defs))
        if "name" not in header:
            raise Invalid("a name column is required", code="bad_header")
        outcome = Outcome(rows=len(table))
        good: list[MemberRow] = []
        for line, row in table:
            cells = {h: row[i] if i < len(row) else None for i, h in enumerate(header) if h}
            try:
                good.append(_member_row(line, cells, defs))
            except (ValidationError, ValueError, Invalid) as exc:
                outcome.reject(line, _reasons(exc))
        good = await self._unique_members(good, outcome)
        outcome.rejected.sort(key=lambda r: int(r["row"]))
        if dry_run or (outcome.rejected and not partial):
            if outcome.rejected and not partial and not dry_run:
                raise ImportRejected(
                    f"{len(outcome.rejected)} rows rejected: nothing imported",
                    details=outcome.body(dry_run=False, partial=False),
                )
            return outcome.body(dry_run=dry_run, partial=partial)
        now = to_millis(self._clock.now())
        try:
            async with self._db.write() as conn:
                for member in good:
                    await self._insert_member(conn, member, defs, now)
        except sa.exc.IntegrityError as exc:
            raise Conflict(
                "a phone, ID or card number was taken while importing: nothing imported, retry",
                code="import_conflict",
            ) from exc
        outcome.applied = len(good)
        return outcome.body(dry_run=False, partial=partial)

    async def _unique_members(self, rows: list[MemberRow], outcome: Outcome) -> list[MemberRow]:
        """Phone, ID number and card number: unique in the file and against the chain."""
        keys: dict[str, Callable[[MemberRow], str | None]] = {
            "phone": lambda r: r.data.phone,
            "id_number": lambda r: self._id_hash(r.data.id_number) if r.data.id_number else None,
            "card_number": lambda r: r.card_number.upper() if r.card_number else None,
        }
        columns = {"phone": members.c.phone, "id_number": members.c.id_hash,
                   "card_number": cards.c.number}  # fmt: skip
        bad: dict[int, list[str]] = {}
        for name, key_of in keys.items():
            first_line: dict[str, int] = {}
            for row in rows:
                key = key_of(row)
                if key is None:
                    continue
                if key in first_line:
                    bad.setdefault(row.line, []).append(f"{name}: same as row {first_line[key]}")
                else:
                    first_line[key] = row.line
            taken: set[str] = set()
            values = list(first_line)
            async with self._db.read() as conn:
                for start in range(0, len(values), 500):
                    chunk = values[start : start + 500]
                    column = columns[name]
                    found = await conn.execute(sa.select(column).where(column.in_(chunk)))
                    taken |= {str(v) for (v,) in found}
            for key in taken:
                bad.setdefault(first_line[key], []).append(f"{name}: already in use")
        for line, reasons in bad.items():
            outcome.reject(line, reasons)
        return [row for row in rows if row.line not in bad]

    async def _insert_member(
        self,
        conn: AsyncConnection,
        row: MemberRow,
        defs: dict[str, custom_fields.Definition],
        now: int,
    ) -> None:
        data = row.data
        member_id = await conn.scalar(
            members.insert()
            .values(
                name=data.name,
                phone=data.phone,
                gender=data.gender,
                birthday=data.birthday,
                level=data.level,
                id_hash=self._id_hash(data.id_number) if data.id_number else None,
                id_last4=data.id_number[-4:] if data.id_number else None,
                address=data.address,
                email=data.email,
                notes=data.notes,
                points=0,
                balance_fen=0,
                active=True,
                created_at=now,
                updated_at=now,
            )
            .returning(members.c.id)
        )
        assert member_id is not None
        await ledger.set_balances(
            conn, member_id, points=data.points, balance_fen=data.balance_fen,
            kind="opening", now=now,
        )  # fmt: skip
        await custom_fields.store(conn, "member", member_id, defs, row.custom)
        await member_created(conn, member_id, now, data.birthday)
        if row.card_number is not None:
            number = row.card_number.upper()
            await conn.execute(
                cards.insert().values(
                    member_id=member_id, number=number, kind="barcode", is_main=True,
                    checked=luhn_valid(number), member_code=new_member_code(),
                    active=True, created_at=now,
                )
            )  # fmt: skip

    # --- sales ------------------------------------------------------------------------------

    async def sales(self, raw: bytes, *, dry_run: bool, partial: bool) -> dict[str, Any]:
        header, table = read_table(raw)
        _check_header(header, SALE_COLUMNS, set())
        for required in ("ref", "store", "date"):
            if required not in header:
                raise Invalid(f"a {required} column is required", code="bad_header")
        if "amount_fen" not in header and "amount_yuan" not in header:
            raise Invalid("an amount_fen or amount_yuan column is required", code="bad_header")
        outcome = Outcome(rows=len(table))
        async with self._db.read() as conn:
            known_stores = {s for (s,) in await conn.execute(sa.select(stores.c.id))}
        good: list[Sale] = []
        seen: dict[tuple[str, str], int] = {}
        for line, row in table:
            cells = {h: row[i] if i < len(row) else None for i, h in enumerate(header) if h}
            try:
                sale = _sale_row(line, cells, known_stores)
            except ValueError as exc:
                outcome.reject(line, _reasons(exc))
                continue
            key = (sale.store, sale.ref)
            if key in seen:
                outcome.reject(line, [f"ref: same as row {seen[key]}"])
                continue
            seen[key] = line
            good.append(sale)
        good = await self._resolve_sales(good, outcome)
        outcome.rejected.sort(key=lambda r: int(r["row"]))
        if outcome.rejected and not partial and not dry_run:
            raise ImportRejected(
                f"{len(outcome.rejected)} rows rejected: nothing imported",
                details=outcome.body(dry_run=False, partial=False),
            )
        if dry_run:
            return outcome.body(dry_run=True, partial=partial)
        async with self._db.write() as conn:
            for sale in good:
                await _insert_sale(conn, sale)
        outcome.applied = len(good)
        return outcome.body(dry_run=False, partial=partial)

    async def _resolve_sales(self, sales: list[Sale], outcome: Outcome) -> list[Sale]:
        """Find each sale's member; refuse refs already imported."""
        out = []
        async with self._db.read() as conn:
            for sale in sales:
                reasons = []
                if sale.member_key is not None:
                    kind, value = sale.member_key
                    if kind == "member_id":
                        query = sa.select(members.c.id).where(members.c.id == int(value))
                    elif kind == "phone":
                        query = sa.select(members.c.id).where(members.c.phone == value)
                    else:
                        query = sa.select(cards.c.member_id).where(cards.c.number == value.upper())
                    sale.member = await conn.scalar(query)
                    if sale.member is None:
                        reasons.append(f"{kind}: no such member")
                done = await conn.scalar(
                    sa.select(orders.c.id).where(
                        orders.c.store_id == sale.store,
                        orders.c.request_id == "import:" + sale.ref,
                    )
                )
                if done is not None:
                    reasons.append(f"ref: already imported as order {done}")
                if reasons:
                    outcome.reject(sale.line, reasons)
                else:
                    out.append(sale)
        return out


@dataclass
class Sale:
    line: int
    ref: str
    store: str
    at_ms: int
    amount_fen: int
    member_key: tuple[str, str] | None
    member: int | None = None


def _when(value: Any) -> int:
    """A date or date-time cell (UTC) as epoch ms."""
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    else:
        text = _text(value) or ""
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError("date: YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return to_millis(when.timestamp())


def _sale_row(line: int, cells: dict[str, Any], known_stores: set[str]) -> Sale:
    ref = _text(cells.get("ref"))
    if ref is None or len(ref) > 57 or not ID_PATTERN_RE.fullmatch(ref):
        raise ValueError("ref: 1-57 of A-Z a-z 0-9 _ . -")
    store = _text(cells.get("store"))
    if store not in known_stores:
        raise ValueError("store: no such store")
    at_ms = _when(cells.get("date"))
    if _text(cells.get("amount_fen")) is not None:
        amount = _integer(cells["amount_fen"], "amount_fen")
    else:
        amount = _yuan(cells.get("amount_yuan"), "amount_yuan")
    if not 0 <= amount <= 10**12:
        raise ValueError("amount: must be between 0 and 10 000 000 000 yuan")
    member_key = None
    for kind in ("member_id", "phone", "card_number"):
        text = _text(cells.get(kind))
        if text is not None:
            if kind == "member_id" and not text.isdigit():
                raise ValueError("member_id: must be a whole number")
            member_key = (kind, normalise_phone(text) if kind == "phone" else text)
            break
    assert store is not None
    return Sale(line=line, ref=ref, store=store, at_ms=at_ms, amount_fen=amount,
                member_key=member_key)  # fmt: skip


async def _insert_sale(conn: AsyncConnection, sale: Sale) -> None:
    quote = Quote(
        store=sale.store, member=sale.member, level=None, at_ms=sale.at_ms, lines=[],
        list_fen=sale.amount_fen, total_fen=sale.amount_fen, points=0, order_factors=[],
    )  # fmt: skip
    await conn.execute(
        orders.insert().values(
            store_id=sale.store, terminal_id="import", request_id="import:" + sale.ref,
            member_id=sale.member, kind="import", list_fen=sale.amount_fen,
            total_fen=sale.amount_fen, points_earned=0, refunded_fen=0,
            quote=quote.model_dump_json(), created_at=sale.at_ms,
        )
    )  # fmt: skip
    if sale.member is not None:
        await order_committed(conn, sale.member, sale.store, sale.amount_fen, sale.at_ms)

"""The member portal's service: sign-in by card or phone, the member's own data, changes.

Everything here acts for one signed-in member (``member_id`` comes from their web session,
never from the request), so a member can only ever read and change their own records.

Sign-in: ``parse_account`` tells a mobile number from a card number (Luhn-checked; an
unchecked number only when HQ allows imported legacy numbers, as identify does); a wrong
account and a wrong password fail alike (``bad_login``), and an unknown account still costs
one argon2 verification, so neither the answer nor its timing says whether it exists.
Failures are counted per account and per address by the shared ``LoginThrottle``.

Phone change: a 6-digit code goes by SMS to the NEW phone (queued with
``Notifications.send_to``, sent day and night); only an HMAC of it is stored, it expires
after 10 minutes and allows 5 attempts; asking again replaces it (at most one a minute and
five an hour per member).
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal

import segno
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gatewayd.protocols.checks import luhn_valid
from gatewayd.protocols.tokens import mask

from . import custom_fields, ledger
from .clock import Clock, iso, to_millis
from .codes import ConsumptionCodes, IssuedCode, keyed_hash
from .config import CentralSettings
from .db import Database
from .errors import (
    CentralError,
    Conflict,
    Expired,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unavailable,
)
from .logs import get_logger
from .members import MemberService, hash_password
from .models import cards, members, stores
from .models_portal import portal_phone_codes
from .models_programme import ledger_entries, order_payments, orders
from .notifications import Notifications
from .registry import Registry
from .schemas import MemberUpdate
from .web_sessions import LoginThrottle, WebSessions

log = get_logger(__name__)
REALM: Final = "member"
PHONE_CODE_PURPOSE: Final = "portal-phone-code"
PHONE_CODE_TTL_MS: Final = 600_000
PHONE_CODE_ATTEMPTS: Final = 5
PHONE_CODE_EVERY_MS: Final = 60_000
PHONE_CODES_PER_HOUR: Final = 5
PHONE_TEMPLATE: Final = "portal_phone_code"
MOBILE: Final = re.compile(r"(?:\+86|0086)?(1[3-9][0-9]{9})")
CARD: Final = re.compile(r"[A-Z0-9][A-Z0-9-]{3,39}")
_hasher = PasswordHasher()


class LoginFailed(CentralError):
    """Wrong account or password: one answer for both, so accounts cannot be probed."""

    status = 401
    default_code = "bad_login"


@dataclass(frozen=True, slots=True)
class Account:
    """What the member typed to sign in, classified and normalised."""

    kind: Literal["phone", "card"]
    value: str


def parse_account(text: str) -> Account:
    """A mobile number (``+86`` dropped) or a card number (upper-cased); else ``Invalid``.

    Only the shape is judged here; the check digit (and whether an unchecked legacy number
    may sign in) is decided when the account is looked up.
    """
    compact = re.sub(r"\s+", "", text)
    phone = MOBILE.fullmatch(compact)
    if phone:
        return Account(kind="phone", value=phone.group(1))
    value = compact.upper()
    if not CARD.fullmatch(value):
        raise Invalid("enter a card number or a mobile phone number", code="invalid_account")
    return Account(kind="card", value=value)


def qr_svg(content: str) -> str:
    """A QR code of ``content`` as an SVG ``data:`` URI (drawn here: no external service)."""
    return str(segno.make_qr(content, error="m").svg_data_uri(scale=6, border=4))


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _entry_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "account": row.account,
        "amount": row.amount,
        "balance_after": row.balance_after,
        "kind": row.kind,
        "store": row.store_id,
        "order_id": row.order_id,
        "created_at": iso(row.created_at),
    }


class Portal:
    """The member portal's operations, each for the member of the current session."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        members: MemberService,
        codes: ConsumptionCodes,
        notifications: Notifications,
        registry: Registry,
        throttle: LoginThrottle,
        sessions: WebSessions,
        phone_code_key: bytes,
    ) -> None:
        self._db = db
        self._clock = clock
        self._members = members
        self.codes = codes
        self._notifications = notifications
        self._registry = registry
        self.throttle = throttle
        self.sessions = sessions
        self._phone_key = phone_code_key
        self._dummy_hash: str | None = None

    def _now(self) -> int:
        return to_millis(self._clock.now())

    # --- signing in ------------------------------------------------------------------------

    async def _resolve(self, account: Account) -> int | None:
        """The active member the account names, or None (never says why)."""
        card_match = sa.and_(cards.c.number == account.value, cards.c.active.is_(True))
        if account.kind == "card" and not (account.value.isdigit() and luhn_valid(account.value)):
            if not (await self._registry.settings())["allow_legacy_card_numbers"]:
                if account.value.isdigit():
                    raise Invalid("card number check digit is wrong", code="check_digit")
                return None
            card_match = sa.and_(card_match, cards.c.checked.is_(False))
        by_card = (
            sa.select(members.c.id)
            .select_from(cards.join(members, members.c.id == cards.c.member_id))
            .where(card_match, members.c.active.is_(True))
        )
        async with self._db.read() as conn:
            if account.kind == "phone":
                found = await conn.scalar(
                    sa.select(members.c.id).where(
                        members.c.phone == account.value, members.c.active.is_(True)
                    )
                )
                if found is not None:
                    return int(found)
            found = await conn.scalar(by_card.limit(1))
        return None if found is None else int(found)

    async def _dummy_verify(self, password: str) -> None:
        """Spend what a real verification costs, for accounts that do not exist."""
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(hash_password, secrets.token_hex(16))
        await asyncio.to_thread(_verify, self._dummy_hash, password)

    async def login(self, text: str, password: str, address: str) -> int:
        """The member id for a good account and password; ``LoginFailed`` or 429 otherwise."""
        account = parse_account(text)
        member_id = await self._resolve(account)
        key = f"member:{member_id}" if member_id is not None else f"{account.kind}:{account.value}"
        await self.throttle.check(REALM, key, address)
        if member_id is None:
            await self._dummy_verify(password)
            good = False
        else:
            good = await self._members.check_password(member_id, password)
        if not good:
            await self.throttle.failed(REALM, key, address)
            log.warning("portal_login_failed", account=mask(account.value), address=address)
            raise LoginFailed("wrong card number, phone or password")
        await self.throttle.succeeded(REALM, key)
        log.info("portal_login", member_id=member_id, address=address)
        assert member_id is not None
        return member_id

    async def is_active(self, member_id: int) -> bool:
        async with self._db.read() as conn:
            active = await conn.scalar(sa.select(members.c.active).where(members.c.id == member_id))
        return bool(active)

    # --- reading ---------------------------------------------------------------------------

    async def me(self, member_id: int) -> dict[str, Any]:
        """Profile, balances and main card of the member."""
        member = await self._members.get(member_id)
        async with self._db.read() as conn:
            balances = await ledger.balances(conn, member_id)
            defs = await custom_fields.definitions(conn, "member")
        main = next((c for c in member["cards"] if c["main"] and c["active"]), None)
        return {
            "id": member_id,
            "name": member["name"],
            "phone": member["phone"],
            "gender": member["gender"],
            "birthday": member["birthday"],
            "address": member["address"],
            "email": member["email"],
            "level": member["level"],
            "points": balances["points"],
            "balance_fen": balances["balance_fen"],
            "earned_points": balances["earned_points"],
            "card_number": main["number"] if main else None,
            "custom_fields": [
                {
                    "key": key,
                    "label": field.label,
                    "type": field.type,
                    "required": field.required,
                    "choices": list(field.choices) if field.type == "choice" else None,
                    "editable": field.member_editable,
                    "value": member["custom"].get(key),
                }
                for key, field in defs.items()
            ],
        }

    async def ledger(self, member_id: int, limit: int) -> list[dict[str, Any]]:
        """The member's latest ledger entries, newest first."""
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(ledger_entries)
                    .where(ledger_entries.c.member_id == member_id)
                    .order_by(ledger_entries.c.id.desc())
                    .limit(limit)
                )
            ).all()
        return [_entry_out(r) for r in rows]

    async def orders(self, member_id: int, limit: int) -> list[dict[str, Any]]:
        """The member's latest orders with how each was paid, newest first."""
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(orders, stores.c.name.label("store_name"))
                    .select_from(orders.outerjoin(stores, stores.c.id == orders.c.store_id))
                    .where(orders.c.member_id == member_id)
                    .order_by(orders.c.id.desc())
                    .limit(limit)
                )
            ).all()
            ids = [r.id for r in rows]
            pays = (
                await conn.execute(
                    sa.select(order_payments)
                    .where(order_payments.c.order_id.in_(ids))
                    .order_by(order_payments.c.id)
                )
            ).all()
        by_order: dict[int, list[dict[str, Any]]] = {}
        for p in pays:
            by_order.setdefault(p.order_id, []).append(
                {"method": p.method, "amount_fen": p.amount_fen, "points": p.points}
            )
        return [
            {
                "id": r.id,
                "store": r.store_id,
                "store_name": r.store_name,
                "kind": r.kind,
                "total_fen": r.total_fen,
                "points_earned": r.points_earned,
                "refunded_fen": r.refunded_fen,
                "payments": by_order.get(r.id, []),
                "created_at": iso(r.created_at),
            }
            for r in rows
        ]

    async def member_code(self, member_id: int) -> dict[str, Any]:
        """The fixed member code of the main card, with its QR code."""
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(cards.c.number, cards.c.member_code).where(
                        cards.c.member_id == member_id, cards.c.is_main, cards.c.active
                    )
                )
            ).first()
        if row is None:
            raise NotFound("no active main card", code="no_main_card")
        return {
            "member_code": row.member_code,
            "card_number": row.number,
            "qr": qr_svg(row.member_code),
        }

    async def consumption_code(self, member_id: int) -> IssuedCode:
        return await self.codes.issue(member_id)

    # --- changing --------------------------------------------------------------------------

    async def update_profile(self, member_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """Change the safe fields only (the caller's body model allows nothing else).

        Custom fields: only those HQ marked ``member_editable`` (422 ``custom_field_read_only``
        for another); their values are then validated by ``MemberService.update`` exactly
        as an admin's would be.
        """
        if fields.get("custom"):
            async with self._db.read() as conn:
                defs = await custom_fields.definitions(conn, "member")
            read_only = sorted(
                k for k in fields["custom"] if k in defs and not defs[k].member_editable
            )
            if read_only:
                raise Invalid(
                    f"not yours to change: {', '.join(read_only)[:200]}",
                    code="custom_field_read_only",
                )
        if fields:
            await self._members.update(member_id, MemberUpdate.model_validate(fields))
            log.info("portal_profile_changed", member_id=member_id, fields=sorted(fields))
        return await self.me(member_id)

    async def change_password(self, member_id: int, current: str, new: str, address: str) -> None:
        """Needs the current password; wrong guesses count as failed logins."""
        key = f"member:{member_id}"
        await self.throttle.check(REALM, key, address)
        if not await self._members.check_password(member_id, current):
            await self.throttle.failed(REALM, key, address)
            raise Forbidden("the current password is wrong", code="wrong_password")
        await self._members.update(member_id, MemberUpdate.model_validate({"password": new}))
        await self.sessions.end_all(f"{REALM}:{member_id}")
        log.info("portal_password_changed", member_id=member_id)

    def _code_hash(self, member_id: int, phone: str, code: str) -> str:
        return keyed_hash(self._phone_key, f"{member_id}:{phone}:{code}")

    async def request_phone_code(self, member_id: int, phone: str) -> int:
        """Send a code to the new phone; answers its validity in seconds."""
        if self._notifications.senders.get("sms") is None:
            raise Unavailable(
                "SMS is not configured; ask the store to change the phone",
                code="sms_unavailable",
            )
        now = self._now()
        code = f"{secrets.randbelow(10**6):06d}"
        async with self._db.write() as conn:
            current = await conn.scalar(sa.select(members.c.phone).where(members.c.id == member_id))
            if current == phone:
                raise Invalid("this is already your phone number", code="same_phone")
            taken = await conn.scalar(
                sa.select(members.c.id).where(members.c.phone == phone, members.c.id != member_id)
            )
            if taken is not None:
                raise Conflict("phone already in use", code="phone_taken")
            recent = (
                await conn.execute(
                    sa.select(portal_phone_codes.c.created_at).where(
                        portal_phone_codes.c.member_id == member_id,
                        portal_phone_codes.c.created_at > now - 3_600_000,
                    )
                )
            ).scalars()
            times = sorted(recent, reverse=True)
            if times and now - times[0] < PHONE_CODE_EVERY_MS:
                raise RateLimited(
                    "a code was sent less than a minute ago",
                    retry_after=(times[0] + PHONE_CODE_EVERY_MS - now) / 1000,
                    code="code_too_soon",
                )
            if len(times) >= PHONE_CODES_PER_HOUR:
                raise RateLimited(
                    "too many codes this hour",
                    retry_after=(min(times) + 3_600_000 - now) / 1000,
                    code="code_too_soon",
                )
            open_codes = portal_phone_codes.c.closed_at.is_(None)
            await conn.execute(
                portal_phone_codes.update()
                .where(portal_phone_codes.c.member_id == member_id, open_codes)
                .values(closed_at=now)
            )
            code_id = await conn.scalar(
                portal_phone_codes.insert()
                .values(
                    member_id=member_id,
                    phone=phone,
                    code_hash=self._code_hash(member_id, phone, code),
                    attempts=0,
                    created_at=now,
                    expires_at=now + PHONE_CODE_TTL_MS,
                )
                .returning(portal_phone_codes.c.id)
            )
        await self._notifications.send_to(
            channel="sms",
            address=phone,
            template=PHONE_TEMPLATE,
            data={
                "code": code,
                "subject": "验证码",
                "detail": f"您正在更换会员手机号，验证码{code}，10分钟内有效，请勿告诉他人。",
            },
            dedupe_key=f"portal-phone:{code_id}",
        )
        log.info("portal_phone_code_sent", member_id=member_id, phone=mask(phone))
        return PHONE_CODE_TTL_MS // 1000

    async def confirm_phone(self, member_id: int, phone: str, code: str) -> dict[str, Any]:
        """Set the new phone when ``code`` is the one sent to it (5 tries, 10 minutes)."""
        now = self._now()
        table = portal_phone_codes
        async with self._db.write() as conn:
            row = (
                await conn.execute(
                    sa.select(table)
                    .where(table.c.member_id == member_id, table.c.closed_at.is_(None))
                    .order_by(table.c.id.desc())
                    .limit(1)
                )
            ).first()
            if row is None or row.phone != phone:
                raise NotFound("no code was sent to this phone; ask for one", code="no_code")
            if now >= row.expires_at:
                raise Expired("the code has expired; ask for a new one", code="code_expired")
            if row.attempts >= PHONE_CODE_ATTEMPTS:
                raise Expired("too many wrong codes; ask for a new one", code="code_exhausted")
            expected = self._code_hash(member_id, phone, code)
            right = hmac.compare_digest(expected, row.code_hash)
            await conn.execute(
                table.update()
                .where(table.c.id == row.id)
                .values(
                    attempts=row.attempts + (0 if right else 1), closed_at=now if right else None
                )
            )
        if not right:  # raised after the block: the attempt is counted (committed) first
            left = PHONE_CODE_ATTEMPTS - row.attempts - 1
            raise Invalid("the code is wrong", code="wrong_code", details={"attempts_left": left})
        await self._members.update(member_id, MemberUpdate.model_validate({"phone": phone}))
        log.info("portal_phone_changed", member_id=member_id, phone=mask(phone))
        return await self.me(member_id)


def build_portal(
    settings: CentralSettings,
    db: Database,
    clock: Clock,
    *,
    members: MemberService,
    codes: ConsumptionCodes,
    notifications: Notifications,
    registry: Registry,
) -> Portal:
    """The portal with its own session realm (``member``) and cookie."""
    sessions = WebSessions(
        db,
        clock,
        realm=REALM,
        cookie_name="gatewayd_portal_session",
        idle_seconds=settings.portal_session_idle,
        absolute_seconds=settings.portal_session_max,
    )
    return Portal(
        db,
        clock,
        members=members,
        codes=codes,
        notifications=notifications,
        registry=registry,
        throttle=LoginThrottle(db, clock),
        sessions=sessions,
        phone_code_key=settings.key_for(PHONE_CODE_PURPOSE),
    )

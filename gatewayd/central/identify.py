"""``POST /v1/identify``: any token a device read → the member and card it belongs to.

The classifier (``gatewayd.protocols.tokens``) says what the token is; each kind has its own
lookup. Every answer with a status below 500 is recorded; with an ``event_id`` the first
answer is stored and a replay returns it unchanged (a unique constraint settles concurrent
replays). Provider outages (5xx) are not recorded, so the gateway can retry the same event.

This is the tills' hot path. Look-ups and the recording insert are prepared once and run on
the driver directly (``Database.fetch_row`` / ``insert_or_get``); on SQLite the inserts of
concurrent requests share one commit. An answer leaves only after its record is committed.
A replay that arrives while the first answer's record is still being committed waits for
that answer (``_in_flight``); one that arrives later finds the stored answer through the
unique constraint, in this process or another.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from gatewayd.protocols.checks import gb11643_valid, luhn_valid
from gatewayd.protocols.tokens import (
    CONSUMPTION_CODE_LENGTH,
    CONSUMPTION_CODE_PREFIX,
    MEMBER_CODE_LENGTH,
    MEMBER_CODE_PREFIX,
    Method,
    Token,
    TokenError,
    TokenKind,
    classify,
    normalise,
)

from . import logs
from .auth import Principal
from .clock import Clock, to_millis
from .codes import ConsumptionCodes, check_consumption_code, keyed_hash
from .db import Database, RunningLoop
from .errors import CentralError, Invalid, NotFound, error_body
from .jsonwire import dumps_bytes
from .logs import get_logger
from .members import summary
from .models import cards, identifications, members, payment_bindings
from .payments import PaymentAdapter
from .registry import Registry
from .schemas import IdentifyRequest

log = get_logger(__name__)

_TRACK2 = re.compile(r";(\d{4,19})[=?]")
_TRACK1 = re.compile(r"%[A-Za-z](\d{4,19})\^")
_PATTERNS: Final[dict[TokenKind, re.Pattern[str]]] = {
    TokenKind.WECHAT_PAYMENT_CODE: re.compile(r"1[0-5]\d{16}"),
    TokenKind.ALIPAY_PAYMENT_CODE: re.compile(r"(?:2[5-9]|30)\d{14,22}"),
    TokenKind.UNIONPAY_PAYMENT_CODE: re.compile(r"62\d{14,18}"),
    TokenKind.LEGACY_MEMBER_CODE: re.compile(r"[A-Za-z]{36}"),
    TokenKind.IC_UID: re.compile(r"(?:[0-9A-Fa-f]{2}){4,10}"),
    TokenKind.CARD_NUMBER: re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{3,39}"),
    TokenKind.PHONE: re.compile(r"(?:\+86|0086)?\d{3,20}"),
}
PAYMENT_PROVIDERS: Final = {
    TokenKind.WECHAT_PAYMENT_CODE: "wechat",
    TokenKind.ALIPAY_PAYMENT_CODE: "alipay",
}

_MEMBER_COLUMNS = (
    members.c.id,
    members.c.name,
    members.c.level,
    members.c.phone,
    members.c.points,
    members.c.balance_fen,
    members.c.active,
    members.c.id_hash,
)
_CARD_COLUMNS = (
    cards.c.id.label("card_id"),
    cards.c.number.label("card_number"),
    cards.c.kind.label("card_kind"),
    cards.c.is_main.label("card_main"),
    cards.c.active.label("card_active"),
)


def pan_from_track(data: str) -> str | None:
    """The card number (PAN) in magnetic-stripe track 2 or track 1 data, if any."""
    match = _TRACK2.search(data) or _TRACK1.search(data)
    return match.group(1) if match else None


# Methods under which the classifier takes a plain run of digits for one of the chain's own
# codes (from an IC-card reader the digits are a UID, from an ID-card reader an ID number,
# from a caller-ID box a phone number, from a stripe reader track data).
_OWN_CODE_METHODS: Final = frozenset({Method.BARCODE, Method.FACE, Method.PALM, Method.MANUAL})


def own_code(req: IdentifyRequest) -> Token | None:
    """A member or consumption code exactly as printed, else None: the common case, cheaply.

    Gives the very token ``classify`` gives for such input (no noise to strip, no AIM
    prefix, not a doubled read, valid check digit; ``tests/central/test_central_perf_parts.py``
    compares them); anything else goes the general way.
    """
    text = req.token
    if req.kind is not None or req.method not in _OWN_CODE_METHODS:
        return None
    length = len(text)
    if length == MEMBER_CODE_LENGTH and text.startswith(MEMBER_CODE_PREFIX):
        kind = TokenKind.MEMBER_CODE
    elif length == CONSUMPTION_CODE_LENGTH and text.startswith(CONSUMPTION_CODE_PREFIX):
        kind = TokenKind.CONSUMPTION_CODE
    else:
        return None
    half = length // 2
    if not text.isdigit() or not text.isascii() or text[:half] == text[half:]:
        return None
    if not luhn_valid(text):
        return None
    return Token(kind=kind, value=text)


def token_from_request(req: IdentifyRequest) -> Token:
    """Classify the request's token (or check it against the ``kind`` the caller gave)."""
    token = own_code(req)
    if token is not None:
        return token
    try:
        text = normalise(req.token)
    except TokenError as exc:
        raise Invalid(str(exc), code="malformed_token") from exc
    if text[0] in "%;" or req.method is Method.MAGSTRIPE:
        pan = pan_from_track(text)
        if pan is None and text[0] in "%;":
            raise Invalid("no card number in the track data", code="malformed_token")
        text = pan or text
    if req.kind is not None:
        return _as_kind(text, req.kind)
    try:
        token = classify(text, req.method)
    except TokenError as exc:
        raise Invalid(str(exc), code="malformed_token") from exc
    if token.kind is TokenKind.UNKNOWN:
        reason = str(token.extra.get("reason", "unrecognised token"))
        raise Invalid(reason, code="malformed_token")
    return token


def _as_kind(text: str, kind: TokenKind) -> Token:
    """A token of the given kind, or 422 when the text cannot be one."""
    bad = Invalid(f"not a valid {kind.value}", code="malformed_token")
    if kind is TokenKind.UNKNOWN:
        raise Invalid("kind 'unknown' cannot be resolved", code="malformed_token")
    if kind is TokenKind.MEMBER_CODE:
        if len(text) != MEMBER_CODE_LENGTH or not text.startswith(MEMBER_CODE_PREFIX):
            raise bad
        if not luhn_valid(text):
            raise Invalid("member code check digit mismatch", code="check_digit")
        return Token(kind=kind, value=text)
    if kind is TokenKind.CONSUMPTION_CODE:
        return Token(kind=kind, value=check_consumption_code(text))
    if kind is TokenKind.ID_NUMBER:
        if not gb11643_valid(text.upper()):
            raise bad
        return Token(kind=kind, value=text.upper())
    pattern = _PATTERNS[kind]
    if not pattern.fullmatch(text):
        raise bad
    if kind is TokenKind.PHONE:
        return Token(kind=kind, value=re.sub(r"^(?:\+86|0086)", "", text))
    if kind is TokenKind.CARD_NUMBER:
        value = text.upper()
        if value.isdigit():
            return Token(kind=kind, value=value, extra={"check_digit": luhn_valid(value)})
        return Token(kind=kind, value=value)
    if kind in (TokenKind.IC_UID, TokenKind.LEGACY_MEMBER_CODE):
        return Token(kind=kind, value=text.upper())
    return Token(kind=kind, value=text)


Observer = Callable[[str, str, int, float], None]
"""Told of every answered identification: token kind, input method, status, seconds."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What identify answers: an HTTP status and a JSON body.

    ``raw`` is the body already serialised, when identify has it at hand (a fresh answer:
    the same JSON was stored with the record); exactly ``jsonwire.dumps_bytes(body)``.
    """

    status: int
    body: dict[str, Any]
    raw: bytes | None = None


_RECORD_COLUMNS: Final = (
    "store_id",
    "terminal_id",
    "gateway_id",
    "event_id",
    "token_kind",
    "token_last4",
    "method",
    "member_id",
    "card_id",
    "secondary_card",
    "status",
    "response",
    "created_at",
)


class Identifier:
    """Resolves tokens to members and records each identification."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        id_key: bytes,
        codes: ConsumptionCodes,
        registry: Registry,
        adapters: dict[str, PaymentAdapter],
        observe: Observer | None = None,
    ) -> None:
        self._db = db
        self._observe = observe
        self._clock = clock
        self._id_key = id_key
        self._codes = codes
        self._registry = registry
        self._adapters = adapters
        self._stored_query = db.prepare(_STORED)
        self._recorder = db.recorder(identifications, _RECORD_COLUMNS, self._stored_query)
        self._by_card_field = {kind: db.prepare(q) for kind, q in _BY_CARD_FIELD.items()}
        self._by_number = db.prepare(_BY_NUMBER)
        self._by_legacy_number = db.prepare(_BY_LEGACY_NUMBER)
        self._by_phone = db.prepare(_BY_PHONE)
        self._by_id_hash = db.prepare(_BY_ID_HASH)
        self._by_member_id = db.prepare(_BY_MEMBER_ID)
        self._by_binding = db.prepare(_BY_BINDING)
        # (store, event_id) → the answer whose record is being committed right now.
        self._in_flight: dict[tuple[str, str], asyncio.Future[Outcome]] = {}
        self._running_loop = RunningLoop()

    async def identify(self, req: IdentifyRequest, principal: Principal) -> Outcome:
        started = time.perf_counter()
        principal.require_store(req.store)
        if not self._registry.terminal_known(req.store, req.terminal):
            await self._registry.require_terminal(req.store, req.terminal)
        if req.event_id is not None:
            pending = self._in_flight.get((req.store, req.event_id))
            if pending is not None:
                replayed = await _first_answer(pending)
                if replayed is not None:
                    return replayed
        # The enums are StrEnums: used as the strings they are (``.value`` costs a call).
        kind: str = req.kind if req.kind else TokenKind.UNKNOWN
        value = req.token
        row: Any = None
        try:
            token = token_from_request(req)
            kind, value = token.kind, token.value
            if req.event_id is not None and token.kind in PAYMENT_PROVIDERS:
                # A replayed payment code must not reach the provider a second time. Other
                # kinds skip this look-up: the insert below finds a replay all the same.
                stored = await self._stored(req.store, req.event_id)
                if stored is not None:
                    return stored
            if req.id_number is not None and not gb11643_valid(req.id_number.upper()):
                raise Invalid("id_number is not a valid ID number", code="malformed_id_number")
            row = await self._resolve(token)
            body: dict[str, Any] = {
                "member": summary(row),
                "card": _card(row),
                "method": token.kind,
                "via": req.method,
                "id_match": self._id_match(row, req.id_number),
            }
            status = 200
        except CentralError as exc:
            if exc.status >= 500:
                raise
            status, body = exc.status, error_body(exc)
        outcome = await self._record(req, principal, kind, value, row, status, body)
        if self._observe is not None:
            self._observe(kind, req.method, outcome.status, time.perf_counter() - started)
        if logs.enabled(logging.INFO):  # masking the fields costs microseconds
            log.info(
                "identify",
                store=req.store,
                terminal=req.terminal,
                kind=kind,
                token=value,
                status=outcome.status,
                member_id=row.id if row is not None else None,
            )
        return outcome

    def _id_match(self, row: Any, id_number: str | None) -> bool | None:
        if id_number is None:
            return None
        if row.id_hash is None:
            return False
        return hmac.compare_digest(row.id_hash, keyed_hash(self._id_key, id_number.upper()))

    async def _stored(self, store: str, event_id: str) -> Outcome | None:
        pending = self._in_flight.get((store, event_id))
        if pending is not None:
            replayed = await _first_answer(pending)
            if replayed is not None:
                return replayed
        row = await self._db.fetch_row(self._stored_query, {"store": store, "event_id": event_id})
        if row is None:
            return None
        return _stored_outcome(row)

    async def _record(
        self,
        req: IdentifyRequest,
        principal: Principal,
        kind: str,
        value: str,
        row: Any,
        status: int,
        body: dict[str, Any],
    ) -> Outcome:
        raw = dumps_bytes(body)
        response = raw.decode()
        values = {
            "store_id": req.store,
            "terminal_id": req.terminal,
            "gateway_id": principal.gateway_id,
            "event_id": req.event_id,
            "token_kind": kind[:32],
            "token_last4": value[-4:],
            "method": req.method,
            "member_id": row.id if row is not None else None,
            "card_id": row.card_id if row is not None else None,
            "secondary_card": (not row.card_main) if row is not None and row.card_id else None,
            "status": status,
            "response": response,
            "created_at": to_millis(self._clock.now()),
        }
        key = {"store": req.store, "event_id": req.event_id}
        in_flight: asyncio.Future[Outcome] | None = None
        event = (req.store, req.event_id) if req.event_id is not None else None
        if event is not None:
            pending = self._in_flight.get(event)
            if pending is not None:  # the same event came in meanwhile: its answer is ours
                replayed = await _first_answer(pending)
                if replayed is not None:
                    return replayed
            if event not in self._in_flight:
                in_flight = self._running_loop().create_future()
                self._in_flight[event] = in_flight
        try:
            inserted, stored = await self._db.record(self._recorder, values, key)
            if inserted:
                outcome = _outcome(stored, status, body, raw)
            elif stored is not None:  # this event_id was recorded before: answer as then
                outcome = _stored_outcome(stored)
            else:
                raise RuntimeError("identification neither inserted nor found")
        except BaseException as exc:
            if in_flight is not None:
                if isinstance(exc, asyncio.CancelledError):
                    in_flight.cancel()
                else:
                    in_flight.set_exception(exc)
                    in_flight.exception()  # retrieved: replays waiting on it get it too
            raise
        else:
            if in_flight is not None:
                in_flight.set_result(outcome)
        finally:
            if in_flight is not None and event is not None:
                del self._in_flight[event]
        return outcome

    async def _resolve(self, token: Token) -> Any:
        kind, value = token.kind, token.value
        fetch = self._db.fetch_row
        if kind in PAYMENT_PROVIDERS:
            provider = PAYMENT_PROVIDERS[kind]
            adapter = self._adapters.get(provider)
            if adapter is None:
                raise NotFound(
                    f"no {provider} payment adapter configured", code="provider_not_configured"
                )
            # Ask the provider before taking a database connection: it may take seconds.
            account = await adapter.account_for(value)
            row = await fetch(self._by_binding, {"provider": provider, "account": account})
            if row is None:
                raise NotFound(f"no member bound to this {provider} account", code="not_bound")
            return _active(row)
        if kind is TokenKind.UNIONPAY_PAYMENT_CODE:
            raise NotFound("UnionPay codes cannot identify members", code="unsupported_token")
        if kind in self._by_card_field:
            return _active(await fetch(self._by_card_field[kind], {"value": value}))
        if kind is TokenKind.CARD_NUMBER:
            return await self._card_number(token)
        if kind is TokenKind.PHONE:
            row = await fetch(self._by_phone, {"value": value})
            if row is None:  # a "phone member card": the number is the phone number
                row = await fetch(self._by_number, {"value": value})
            return _active(row)
        if kind is TokenKind.ID_NUMBER:
            digest = keyed_hash(self._id_key, value)
            return _active(await fetch(self._by_id_hash, {"value": digest}))
        if kind is TokenKind.CONSUMPTION_CODE:
            code = await self._codes.lookup(value)
            return _active(await fetch(self._by_member_id, {"value": code.member_id}))
        raise Invalid(f"cannot resolve {kind.value}", code="malformed_token")

    async def _card_number(self, token: Token) -> Any:
        """Checked numbers are looked up directly; unchecked ones only as legacy imports."""
        value = token.value
        if value.isdigit() and luhn_valid(value):
            return _active(await self._db.fetch_row(self._by_number, {"value": value}))
        allowed = (await self._registry.settings())["allow_legacy_card_numbers"]
        if not allowed:
            raise Invalid("card number fails its check digit", code="check_digit")
        row = await self._db.fetch_row(self._by_legacy_number, {"value": value})
        if row is None and value.isdigit():
            raise Invalid(
                "card number fails its check digit and is no imported legacy number",
                code="check_digit",
            )
        return _active(row)


GC_YOUNG_THRESHOLD: Final = 20_000
"""Container objects allocated (net) before a young-generation collection; Python's is 700."""


def settle_heap() -> None:
    """Exempt what is loaded at start (modules, models, services, pools) from full GC passes,
    and collect the young generation less often.

    Everything allocated before the first request lives as long as the process; a full
    collection that walks it all stops the event loop for tens of milliseconds, which is
    most of identify's p99 otherwise, and costs every request its share. Called once the
    application's services are built (again after a rebuild: freezing is cumulative).

    Requests make little cyclic garbage; what a young collection walks is mostly the
    objects of requests still in flight (64 at once under load), promoted and walked again
    later. At Python's threshold of 700 that cost identify about 4 % of its instructions;
    at 20 000 a collection comes every thousand requests or so, and holds at most that many
    objects of garbage meanwhile (a few MB).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def _first_answer(pending: asyncio.Future[Outcome]) -> Outcome | None:
    """The answer being recorded for the same event, or None if that request was cancelled."""
    try:
        outcome = await asyncio.shield(pending)
    except asyncio.CancelledError:
        if pending.cancelled():  # the first request gave up, not this one: go on afresh
            return None
        raise
    # The first request's answer as a replay gets it: from the stored form, like any replay.
    return Outcome(status=outcome.status, body=outcome.body)


def _active(row: Any) -> Any:
    if row is None:
        raise NotFound("no member for this token", code="unknown_token")
    if not row.active:
        raise NotFound("the member is deactivated", code="member_inactive")
    if row.card_id is not None and not row.card_active:
        raise NotFound("the card is deactivated", code="card_inactive")
    return row


def _card(row: Any) -> dict[str, Any] | None:
    if row.card_id is None:
        return None
    return {
        "id": row.card_id,
        "number": row.card_number,
        "kind": row.card_kind,
        "main": row.card_main,
    }


def _outcome(identification_id: int, status: int, body: dict[str, Any], raw: bytes) -> Outcome:
    """A fresh answer; ``raw`` is ``body`` serialised (as stored), without the id."""
    if status == 200:
        # The dict with the id appended, serialised, without serialising it twice.
        raw = b'%s,"identification_id":%d}' % (raw[:-1], identification_id)
        body = {**body, "identification_id": identification_id}
    return Outcome(status=status, body=body, raw=raw)


def _stored_outcome(row: Any) -> Outcome:
    """A replay: the stored answer (with the stored record's id), as answered then."""
    body = json.loads(row.response)
    if row.status == 200:
        body = {**body, "identification_id": row.id}
    return Outcome(status=row.status, body=body)


def _by_card(*conditions: Any) -> sa.Select[Any]:
    return (
        sa.select(*_MEMBER_COLUMNS, *_CARD_COLUMNS)
        .select_from(cards.join(members, members.c.id == cards.c.member_id))
        .where(*conditions)
        .limit(1)
    )


def _by_member(condition: Any) -> sa.Select[Any]:
    main_card = sa.and_(cards.c.member_id == members.c.id, cards.c.is_main, cards.c.active)
    return (
        sa.select(*_MEMBER_COLUMNS, *_CARD_COLUMNS)
        .select_from(members.outerjoin(cards, main_card))
        .where(condition)
        .limit(1)
    )


# Statements are built once: building and cache-keying a statement per request costs more
# CPU than the database spends answering it.
_VALUE: sa.BindParameter[Any] = sa.bindparam("value")
_BY_CARD_FIELD: Final[dict[TokenKind, sa.Select[Any]]] = {
    TokenKind.MEMBER_CODE: _by_card(cards.c.member_code == _VALUE),
    TokenKind.LEGACY_MEMBER_CODE: _by_card(cards.c.legacy_code == _VALUE),
    TokenKind.IC_UID: _by_card(cards.c.ic_uid == _VALUE),
}
_BY_NUMBER: Final = _by_card(cards.c.number == _VALUE)
_BY_LEGACY_NUMBER: Final = _by_card(cards.c.number == _VALUE, cards.c.checked.is_(False))
_BY_PHONE: Final = _by_member(members.c.phone == _VALUE)
_BY_ID_HASH: Final = _by_member(members.c.id_hash == _VALUE)
_BY_MEMBER_ID: Final = _by_member(members.c.id == _VALUE)
# The member of the account's card used last (then the newest binding).
_BY_BINDING: Final = (
    sa.select(*_MEMBER_COLUMNS, *_CARD_COLUMNS)
    .select_from(
        payment_bindings.join(cards, cards.c.id == payment_bindings.c.card_id).join(
            members, members.c.id == payment_bindings.c.member_id
        )
    )
    .where(
        payment_bindings.c.provider == sa.bindparam("provider"),
        payment_bindings.c.account_id == sa.bindparam("account"),
        cards.c.active.is_(True),
        members.c.active.is_(True),
    )
    .order_by(sa.func.coalesce(cards.c.last_used_at, -1).desc(), payment_bindings.c.id.desc())
    .limit(1)
)
_STORED: Final = sa.select(
    identifications.c.id, identifications.c.status, identifications.c.response
).where(
    identifications.c.store_id == sa.bindparam("store"),
    identifications.c.event_id == sa.bindparam("event_id"),
)

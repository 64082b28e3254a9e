"""Pricing: what an order costs a member and what it earns, with every factor explained.

The engine (``compute_quote``) is pure: rules, the member's level and birthday, the store's
time zone, the lines and an instant in; a ``Quote`` out. No I/O, no clock. ``Pricing`` is the
thin service around it that loads those facts through ``Catalog`` (cached per process).

The arithmetic (see docs/programme-pricing.md for the whole contract):

* factor of a line = level × product × birthday × store × time slot × (1 + whole-order bonus),
  separately for the price (discount factor, 0.9 = 10 % off) and for points. An "extra
  discount x %" is the bonus −x/100, "extra points y %" is +y/100;
* one rule per dimension: the dimension's own priority first (product over category; birthday
  day > week > month; time slot date > yearly > monthly > weekly; the whole-order range with
  the highest lower bound), then store-specific over chain-wide, level-restricted over
  unrestricted, then the newest rule;
* per line: list = unit price × quantity, price = list × discount factor, both rounded half-up
  to the fen; points = floor(price in yuan × points factor) (one point per yuan before
  factors), walk-ins earn none; totals are the sums of the lines;
* whole-order ranges are tested against the list total before any discount (members only).

The request and response models (the contract) are in ``schemas_pricing.py``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Context, Decimal, localcontext
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo

from .errors import Invalid
from .schemas import MAX_FEN
from .schemas_pricing import MAX_LINES as MAX_LINES
from .schemas_pricing import ONE as ONE
from .schemas_pricing import AppliedFactor as AppliedFactor
from .schemas_pricing import EpochMillis as EpochMillis
from .schemas_pricing import FactorKind as FactorKind
from .schemas_pricing import LineQuote as LineQuote
from .schemas_pricing import Quantity as Quantity
from .schemas_pricing import Quote as Quote
from .schemas_pricing import QuoteLine as QuoteLine
from .schemas_pricing import QuoteRequest as QuoteRequest
from .schemas_pricing import StrictFen as StrictFen

if TYPE_CHECKING:
    from .catalog import Catalog
    from .registry import Registry

_FEN = Decimal(1)
_MATH = Context(prec=80)  # exact for every product of bounded factors we allow
BIRTHDAY_PRIORITY: Final = {"day": 3, "week": 2, "month": 1}
SLOT_PRIORITY: Final = {"date": 4, "yearly": 3, "monthly": 2, "weekly": 1}


# --- the facts the engine works on ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One active pricing rule (see ``models_catalog.pricing_rules`` for the columns)."""

    id: int
    kind: FactorKind
    name: str
    discount: Decimal = ONE
    points: Decimal = ONE
    store: str | None = None
    level: str | None = None
    members_only: bool = True
    product: str | None = None
    category: str | None = None
    birthday_window: str | None = None
    slot: str | None = None
    slot_days: frozenset[int] = frozenset()
    slot_date: str | None = None
    time_from: int | None = None
    time_until: int | None = None
    min_fen: int | None = None
    max_fen: int | None = None


@dataclass(frozen=True, slots=True)
class LevelFactors:
    level: str
    name: str
    discount: Decimal
    points: Decimal


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    category: str | None
    price_fen: int
    unit: str = "piece"
    active: bool = True


@dataclass(frozen=True, slots=True)
class MemberFacts:
    id: int
    level: str
    birthday: dt.date | None


@dataclass(frozen=True, slots=True)
class PricedLine:
    """A line ready for the engine: its product (None for quick spend) and unit price."""

    product: Product | None
    quantity: Decimal
    unit_price_fen: int


@dataclass(slots=True)
class RuleBook:
    """Rules indexed for pricing; built once per catalog version, read by every quote."""

    levels: Mapping[str, LevelFactors] = field(default_factory=dict)
    by_kind: dict[str, list[Rule]] = field(default_factory=dict)
    by_product: dict[str, list[Rule]] = field(default_factory=dict)
    by_category: dict[str, list[Rule]] = field(default_factory=dict)
    # Explanations built once per rule and reused by every line and quote (read-only).
    explained: dict[tuple[str, int, str], AppliedFactor] = field(default_factory=dict)

    @classmethod
    def build(cls, rules: Iterable[Rule], levels: Mapping[str, LevelFactors]) -> RuleBook:
        book = cls(levels=dict(levels))
        for rule in rules:
            if rule.kind == "product" and rule.product is not None:
                book.by_product.setdefault(rule.product, []).append(rule)
            elif rule.kind == "category" and rule.category is not None:
                book.by_category.setdefault(rule.category, []).append(rule)
            else:
                book.by_kind.setdefault(rule.kind, []).append(rule)
        return book


# --- rule matching -------------------------------------------------------------------------


def _eligible(rule: Rule, store: str, member: MemberFacts | None) -> bool:
    if rule.store is not None and rule.store != store:
        return False
    if member is None:
        return not rule.members_only and rule.level is None
    return rule.level is None or rule.level == member.level


def _pick(rules: Iterable[tuple[int, Rule]]) -> Rule | None:
    """The winner among (own priority, rule): priority, then store, then level, then newest."""
    best: tuple[tuple[int, bool, bool, int], Rule] | None = None
    for priority, rule in rules:
        key = (priority, rule.store is not None, rule.level is not None, rule.id)
        if best is None or key > best[0]:
            best = (key, rule)
    return best[1] if best else None


def birthday_matches(window: str, birthday: dt.date, today: dt.date) -> bool:
    """Day: the birthday itself (29 Feb counts on 28 Feb in other years); week: the 7 days
    starting on the birthday (crossing into January for late-December birthdays); month: the
    birthday's calendar month."""
    if window == "month":
        return today.month == birthday.month
    for year in (today.year, today.year - 1):
        day = birthday.day
        if birthday.month == 2 and day == 29 and not calendar.isleap(year):
            day = 28
        start = dt.date(year, birthday.month, day)
        length = 1 if window == "day" else 7
        if start <= today < start + dt.timedelta(days=length):
            return True
    return False


def slot_matches(rule: Rule, local: dt.datetime) -> bool:
    """Whether a time-slot rule covers this local time (its day, then its time of day)."""
    if rule.time_from is not None and rule.time_until is not None:
        minute = local.hour * 60 + local.minute
        if not rule.time_from <= minute < rule.time_until:
            return False
    if rule.slot == "weekly":
        return local.isoweekday() in rule.slot_days
    if rule.slot == "monthly":
        return local.day in rule.slot_days
    if rule.slot == "yearly":
        return rule.slot_date == f"{local.month:02d}-{local.day:02d}"
    if rule.slot == "date":
        return rule.slot_date == local.date().isoformat()
    return False


# --- explanations --------------------------------------------------------------------------


def plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros and never in exponent form (1E+1 → 10)."""
    text = format(value.normalize(), "f")
    return Decimal(text)


def describe(discount: Decimal, points: Decimal) -> str:
    price = f"{plain(discount * 100)} % price" if discount != ONE else "full price"
    return f"{price}, {plain(points)}× points"


def _factor(book: RuleBook, kind: FactorKind, rule: Rule, what: str) -> AppliedFactor:
    key = (kind, rule.id, what)
    found = book.explained.get(key)
    if found is None:
        if len(book.explained) > 100_000:
            book.explained.clear()
        found = book.explained[key] = AppliedFactor(
            kind=kind,
            rule_id=rule.id,
            discount=plain(rule.discount),
            points=plain(rule.points),
            reason=f"{what} ({rule.name}): {describe(rule.discount, rule.points)}",
        )
    return found


def _order_factors(
    book: RuleBook,
    store: str,
    member: MemberFacts | None,
    local: dt.datetime,
    list_total: int,
) -> tuple[list[AppliedFactor], AppliedFactor | None]:
    """The factors shared by every line (level, birthday, store, time slot), then the
    whole-order factor."""
    applied: list[AppliedFactor] = []
    kinds = book.by_kind
    if member is not None:
        level_rule = _pick(
            (0, r)
            for r in kinds.get("level", ())
            if r.level == member.level and _eligible(r, store, member)
        )
        if level_rule is not None:
            applied.append(_factor(book, "level", level_rule, f"member level {member.level}"))
        elif member.level in book.levels:
            lf = book.levels[member.level]
            applied.append(
                AppliedFactor(
                    kind="level",
                    rule_id=None,
                    discount=plain(lf.discount),
                    points=plain(lf.points),
                    reason=f"member level {lf.level} ({lf.name}): "
                    f"{describe(lf.discount, lf.points)}",
                )
            )
        if member.birthday is not None:
            birthday_rule = _pick(
                (BIRTHDAY_PRIORITY.get(r.birthday_window or "", 0), r)
                for r in kinds.get("birthday", ())
                if _eligible(r, store, member)
                and birthday_matches(r.birthday_window or "", member.birthday, local.date())
            )
            if birthday_rule is not None:
                window = birthday_rule.birthday_window
                applied.append(_factor(book, "birthday", birthday_rule, f"birthday {window}"))
    store_rule = _pick((0, r) for r in kinds.get("store", ()) if _eligible(r, store, member))
    if store_rule is not None:
        applied.append(_factor(book, "store", store_rule, f"store {store}"))
    slot_rule = _pick(
        (SLOT_PRIORITY.get(r.slot or "", 0), r)
        for r in kinds.get("time_slot", ())
        if _eligible(r, store, member) and slot_matches(r, local)
    )
    if slot_rule is not None:
        applied.append(_factor(book, "time_slot", slot_rule, f"time slot {slot_rule.slot}"))
    order: AppliedFactor | None = None
    if member is not None:
        order_rule = _pick(
            (r.min_fen or 0, r)
            for r in kinds.get("order_amount", ())
            if _eligible(r, store, member)
            and (r.min_fen or 0) <= list_total
            and (r.max_fen is None or list_total <= r.max_fen)
        )
        if order_rule is not None:
            order = AppliedFactor(
                kind="order_amount",
                rule_id=order_rule.id,
                discount=plain(order_rule.discount),
                points=plain(order_rule.points),
                reason=f"whole order ({order_rule.name}): list total {list_total / 100:.2f} yuan, "
                f"extra discount {plain((ONE - order_rule.discount) * 100)} %, "
                f"extra points {plain((order_rule.points - ONE) * 100)} %",
            )
    return applied, order


def _product_factor(
    book: RuleBook, product: Product, store: str, member: MemberFacts | None
) -> AppliedFactor | None:
    """Product rules first (most specific), else the product's category's rules."""
    rule = _pick((0, r) for r in book.by_product.get(product.id, ()) if _eligible(r, store, member))
    if rule is not None:
        return _factor(book, "product", rule, f"product {product.id}")
    if product.category is None:
        return None
    rule = _pick(
        (0, r) for r in book.by_category.get(product.category, ()) if _eligible(r, store, member)
    )
    if rule is not None:
        return _factor(book, "category", rule, f"category {product.category}")
    return None


# --- the engine ----------------------------------------------------------------------------


def round_fen(value: Decimal) -> int:
    """Half-up to the fen (0.5 fen rounds away from zero)."""
    return int(value.quantize(_FEN, rounding=ROUND_HALF_UP))


def points_for(price_fen: int, points_factor: Decimal) -> int:
    """Floor of (price in yuan × points factor): one point per whole yuan before factors."""
    return int((Decimal(price_fen) * points_factor / 100).to_integral_value(rounding=ROUND_FLOOR))


def compute_quote(
    book: RuleBook,
    *,
    store: str,
    timezone: ZoneInfo,
    member: MemberFacts | None,
    lines: Sequence[PricedLine],
    at_ms: int,
) -> Quote:
    """Price ``lines`` at ``at_ms`` in ``store`` for ``member`` (None: a walk-in)."""
    with localcontext(_MATH):
        local = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC).astimezone(timezone)
        list_amounts = [round_fen(line.unit_price_fen * line.quantity) for line in lines]
        list_total = sum(list_amounts)
        if list_total > MAX_FEN:
            raise Invalid("order total beyond any possible amount", code="amount_too_large")
        shared, order = _order_factors(book, store, member, local, list_total)
        # The formula's order: level, then product or category, then the rest and the order.
        split = 1 if shared and shared[0].kind == "level" else 0
        head, tail = shared[:split], shared[split:] + ([order] if order is not None else [])
        base_discount, base_points = ONE, ONE
        for f in head + tail:
            base_discount *= f.discount
            base_points *= f.points
        out: list[LineQuote] = []
        # Per product factor (by identity; None: no product rule), the line's factors and
        # their products: computed once per quote, whatever the number of lines.
        combined: dict[int, tuple[list[AppliedFactor], Decimal, Decimal]] = {}
        by_product: dict[str, AppliedFactor | None] = {}
        for line, list_fen in zip(lines, list_amounts, strict=True):
            product: AppliedFactor | None = None
            if line.product is not None:
                pid = line.product.id
                if pid in by_product:
                    product = by_product[pid]
                else:
                    product = by_product[pid] = _product_factor(book, line.product, store, member)
            found = combined.get(id(product))
            if found is None:
                if product is None:
                    found = (head + tail, plain(base_discount), plain(base_points))
                else:
                    found = (
                        [*head, product, *tail],
                        plain(base_discount * product.discount),
                        plain(base_points * product.points),
                    )
                combined[id(product)] = found
            factors, discount, points = found
            price = round_fen(list_fen * discount)
            earned = points_for(price, points) if member is not None else 0
            if earned > MAX_FEN:
                raise Invalid("points beyond any possible amount", code="points_too_large")
            out.append(
                LineQuote(
                    product=line.product.id if line.product else None,
                    name=line.product.name if line.product else None,
                    quantity=plain(line.quantity),
                    list_fen=list_fen,
                    price_fen=price,
                    points=earned,
                    discount_factor=discount,
                    points_factor=points,
                    factors=factors,
                )
            )
    return Quote(
        store=store,
        member=member.id if member else None,
        level=member.level if member else None,
        at_ms=at_ms,
        lines=out,
        list_fen=list_total,
        total_fen=sum(line.price_fen for line in out),
        points=sum(line.points for line in out),
        order_factors=[order] if order is not None else [],
    )


# --- the service ---------------------------------------------------------------------------


class Pricing:
    """Quotes orders: loads rules, products, the member and the store's zone, then prices."""

    def __init__(self, catalog: Catalog, registry: Registry) -> None:
        self._catalog = catalog
        self._registry = registry

    async def quote(self, request: QuoteRequest) -> Quote:
        """Price ``request``; unknown store, product or member answer 404, inactive ones 409."""
        member: MemberFacts | None = None
        if request.member is None:
            snapshot = await self._catalog.snapshot()
        else:
            snapshot, member = await self._catalog.snapshot_and_member(request.member)
        timezone = await self._catalog.store_timezone(snapshot, request.store)
        if request.terminal is not None:
            await self._registry.require_terminal(request.store, request.terminal)
        if request.amount_fen is not None:
            lines = [PricedLine(None, ONE, request.amount_fen)]
        else:
            ids = [line.product for line in request.lines if line.product is not None]
            products = await self._catalog.products_for_quote(snapshot, ids)
            lines = []
            for line in request.lines:
                assert line.product is not None  # the request validator guarantees it
                product = products[line.product]
                unit = product.price_fen if line.unit_price_fen is None else line.unit_price_fen
                lines.append(PricedLine(product, line.quantity, unit))
        at_ms = request.at_ms if request.at_ms is not None else self._catalog.now_ms()
        return compute_quote(
            snapshot.book,
            store=request.store,
            timezone=timezone,
            member=member,
            lines=lines,
            at_ms=at_ms,
        )

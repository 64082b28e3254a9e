"""The pricing engine alone: the domain page's examples, precedence, time zones, rounding.

Pure: no database, no clock. Hypothesis checks the properties every quote must keep.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_FLOOR, Decimal
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gatewayd.central.catalog import rule_columns, rule_of, rule_out
from gatewayd.central.pricing import (
    LevelFactors,
    MemberFacts,
    PricedLine,
    Product,
    QuoteRequest,
    Rule,
    RuleBook,
    birthday_matches,
    compute_quote,
    round_fen,
)
from gatewayd.central.schemas_catalog import KIND_FIELDS, RuleIn

SHANGHAI = ZoneInfo("Asia/Shanghai")
D = Decimal
GOLD = LevelFactors("gold", "Gold", D("0.95"), D("1.5"))
BREAD = Product("bread", "Rye bread", "bakery", 1000)
CAKE = Product("cake", "Cheesecake", "bakery", 3000)
SOCKS = Product("socks", "Socks", "clothing", 2500)


def at(year: int, month: int, day: int, hour: int = 12, zone: ZoneInfo = SHANGHAI) -> int:
    return int(dt.datetime(year, month, day, hour, tzinfo=zone).timestamp() * 1000)


def member(level: str = "gold", birthday: dt.date | None = None) -> MemberFacts:
    return MemberFacts(7, level, birthday)


def quote(
    rules: list[Rule],
    lines: list[PricedLine],
    *,
    who: MemberFacts | None = None,
    when: int | None = None,
    store: str = "store-1",
    levels: dict[str, LevelFactors] | None = None,
    zone: ZoneInfo = SHANGHAI,
) -> Any:
    book = RuleBook.build(rules, levels if levels is not None else {"gold": GOLD})
    return compute_quote(
        book,
        store=store,
        timezone=zone,
        member=who,
        lines=lines,
        at_ms=when if when is not None else at(2026, 3, 4),
    )


def line(product: Product, quantity: str = "1", unit: int | None = None) -> PricedLine:
    return PricedLine(product, D(quantity), product.price_fen if unit is None else unit)


# --- the domain page's examples -------------------------------------------------------------


def test_store_points_factor_of_200_percent_doubles_points() -> None:
    rules = [Rule(id=1, kind="store", name="double points", store="store-1", points=D(2))]
    plain_member = member(level="default")
    here = quote(rules, [line(SOCKS, "4")], who=plain_member)  # 100 yuan
    elsewhere = quote(rules, [line(SOCKS, "4")], who=plain_member, store="store-2")
    assert (here.total_fen, here.points) == (10000, 200)
    assert (elsewhere.total_fen, elsewhere.points) == (10000, 100)
    assert [(f.kind, f.rule_id, f.points) for f in here.lines[0].factors] == [("store", 1, D(2))]
    assert "2× points" in here.lines[0].factors[0].reason


def test_total_factor_is_level_product_birthday_store_slot_times_one_plus_order_bonus() -> None:
    birthday = dt.date(1990, 3, 4)
    rules = [
        Rule(id=1, kind="product", name="rye", product="bread", discount=D("0.9"), points=D(3)),
        Rule(id=2, kind="birthday", name="bday", birthday_window="day", discount=D("0.8"),
             points=D(2)),
        Rule(id=3, kind="store", name="flagship", store="store-1", discount=D("0.98"),
             points=D("1.2")),
        Rule(id=4, kind="time_slot", name="wednesday", slot="weekly", slot_days=frozenset({3}),
             discount=D("0.97"), points=D("1.1")),
        Rule(id=5, kind="order_amount", name="100-900", min_fen=10000, max_fen=90000,
             discount=D("0.95"), points=D("1.25")),
    ]  # fmt: skip
    # 2026-03-04 is a Wednesday; 12 loaves = 120 yuan list.
    got = quote(rules, [line(BREAD, "12")], who=member(birthday=birthday))
    priced = got.lines[0]
    discount = D("0.95") * D("0.9") * D("0.8") * D("0.98") * D("0.97") * (1 + D("-0.05"))
    points = D("1.5") * 3 * 2 * D("1.2") * D("1.1") * (1 + D("0.25"))
    assert priced.discount_factor == discount and priced.points_factor == points
    assert [f.kind for f in priced.factors] == [
        "level", "product", "birthday", "store", "time_slot", "order_amount"
    ]  # fmt: skip
    assert priced.price_fen == round_fen(12000 * discount)
    yuan = D(priced.price_fen) / 100
    assert priced.points == int((yuan * points).to_integral_value(rounding=ROUND_FLOOR))
    assert got.order_factors[0].rule_id == 5 and got.order_factors[0].discount == D("0.95")


def test_time_slot_priority_date_over_yearly_over_monthly_over_weekly() -> None:
    slots = [
        Rule(id=1, kind="time_slot", name="wed", slot="weekly", slot_days=frozenset({3}),
             points=D(2)),
        Rule(id=2, kind="time_slot", name="4th", slot="monthly", slot_days=frozenset({4}),
             points=D(3)),
        Rule(id=3, kind="time_slot", name="4 Mar", slot="yearly", slot_date="03-04",
             points=D(4)),
        Rule(id=4, kind="time_slot", name="the day", slot="date", slot_date="2026-03-04",
             points=D(5)),
    ]  # fmt: skip
    winners = []
    for n in range(4, 0, -1):
        got = quote(slots[:n], [line(SOCKS, "4")], who=member("default"))
        winners.append([f.rule_id for f in got.lines[0].factors])
    assert winners == [[4], [3], [2], [1]]
    # Newest first-added weekly rule does not beat an older date rule.
    newest_weekly = Rule(
        id=9, kind="time_slot", name="wed2", slot="weekly", slot_days=frozenset({3})
    )
    got = quote([*slots, newest_weekly], [line(SOCKS)], who=member("default"))
    assert [f.rule_id for f in got.lines[0].factors] == [4]


def test_whole_order_range_is_for_members_on_the_list_total_inclusive() -> None:
    rule = Rule(id=1, kind="order_amount", name="100-900", min_fen=10000, max_fen=90000,
                discount=D("0.9"), points=D("1.5"))  # fmt: skip
    in_range = quote([rule], [line(BREAD, "10")], who=member("default"))
    assert (in_range.total_fen, in_range.points) == (9000, 135)
    top = quote([rule], [line(CAKE, "30")], who=member("default"))
    assert top.list_fen == 90000 and top.total_fen == 81000
    below = quote([rule], [line(BREAD, "9.999")], who=member("default"))
    assert below.order_factors == [] and below.total_fen == below.list_fen == 9999
    above = quote([rule], [line(CAKE, "30"), line(BREAD, "0.001")], who=member("default"))
    assert above.order_factors == []
    walk_in = quote([rule], [line(BREAD, "10")])
    assert (walk_in.total_fen, walk_in.points, walk_in.order_factors) == (10000, 0, [])


def test_tiers_pick_the_highest_lower_bound() -> None:
    rules = [
        Rule(id=1, kind="order_amount", name="100+", min_fen=10000, discount=D("0.95")),
        Rule(id=2, kind="order_amount", name="500+", min_fen=50000, discount=D("0.9")),
    ]
    got = quote(rules, [line(CAKE, "20")], who=member("default"))
    assert got.order_factors[0].rule_id == 2 and got.total_fen == 54000


@pytest.mark.parametrize(
    ("window", "today", "expected"),
    [
        ("day", dt.date(2026, 5, 17), True),
        ("day", dt.date(2026, 5, 18), False),
        ("week", dt.date(2026, 5, 23), True),
        ("week", dt.date(2026, 5, 24), False),
        ("week", dt.date(2026, 5, 16), False),
        ("month", dt.date(2026, 5, 1), True),
        ("month", dt.date(2026, 6, 1), False),
    ],
)
def test_birthday_windows(window: str, today: dt.date, expected: bool) -> None:
    assert birthday_matches(window, dt.date(1990, 5, 17), today) is expected


def test_birthday_week_crosses_the_new_year_and_leap_days_fall_on_28_february() -> None:
    assert birthday_matches("week", dt.date(1990, 12, 29), dt.date(2027, 1, 4))
    assert not birthday_matches("week", dt.date(1990, 12, 29), dt.date(2027, 1, 5))
    assert birthday_matches("day", dt.date(2000, 2, 29), dt.date(2027, 2, 28))
    assert birthday_matches("day", dt.date(2000, 2, 29), dt.date(2028, 2, 29))
    assert not birthday_matches("day", dt.date(2000, 2, 29), dt.date(2028, 2, 28))


def test_birthday_day_beats_week_beats_month_and_uses_the_store_zone() -> None:
    rules = [
        Rule(id=1, kind="birthday", name="month", birthday_window="month", points=D(2)),
        Rule(id=2, kind="birthday", name="week", birthday_window="week", points=D(3)),
        Rule(id=3, kind="birthday", name="day", birthday_window="day", points=D(5)),
    ]
    who = member("default", dt.date(1990, 3, 4))
    assert quote(rules, [line(SOCKS)], who=who).lines[0].points_factor == 5
    later = at(2026, 3, 6)
    assert quote(rules, [line(SOCKS)], who=who, when=later).lines[0].points_factor == 3
    # 3 March 17:00 UTC is already 4 March (01:00) in Shanghai, still 3 March in UTC.
    edge = int(dt.datetime(2026, 3, 3, 17, tzinfo=dt.UTC).timestamp() * 1000)
    assert quote(rules, [line(SOCKS)], who=who, when=edge).lines[0].points_factor == 5
    utc = quote(rules, [line(SOCKS)], who=who, when=edge, zone=ZoneInfo("UTC"))
    assert utc.lines[0].points_factor == 2


def test_time_of_day_window_is_local_and_end_exclusive() -> None:
    happy = Rule(id=1, kind="time_slot", name="happy hour", slot="weekly",
                 slot_days=frozenset(range(1, 8)), time_from=14 * 60, time_until=16 * 60,
                 discount=D("0.8"), members_only=False)  # fmt: skip
    inside = quote([happy], [line(SOCKS)], when=at(2026, 3, 4, 15))
    edge = quote([happy], [line(SOCKS)], when=at(2026, 3, 4, 16))
    assert (inside.total_fen, edge.total_fen) == (2000, 2500)


# --- precedence -----------------------------------------------------------------------------


def test_product_rule_beats_its_category_and_store_rule_beats_chain_rule() -> None:
    rules = [
        Rule(id=1, kind="category", name="bakery", category="bakery", discount=D("0.8")),
        Rule(id=2, kind="product", name="cake", product="cake", discount=D("0.7")),
        Rule(id=3, kind="product", name="cake here", product="cake", store="store-1",
             discount=D("0.9")),
    ]  # fmt: skip
    got = quote(rules, [line(BREAD), line(CAKE), line(SOCKS)], who=member("default"))
    assert [[(f.kind, f.rule_id) for f in ln.factors] for ln in got.lines] == [
        [("category", 1)],
        [("product", 3)],
        [],
    ]
    other = quote(rules, [line(CAKE)], who=member("default"), store="store-2")
    assert other.lines[0].factors[0].rule_id == 2


def test_level_rule_for_a_store_overrides_the_level_definition() -> None:
    rules = [Rule(id=4, kind="level", name="gold here", level="gold", store="store-1",
                  discount=D("0.9"), points=D(2))]  # fmt: skip
    here = quote(rules, [line(SOCKS, "4")], who=member())
    elsewhere = quote(rules, [line(SOCKS, "4")], who=member(), store="store-2")
    assert (here.total_fen, here.points) == (9000, 180)
    assert (elsewhere.total_fen, elsewhere.points) == (9500, 142)
    assert elsewhere.lines[0].factors[0].rule_id is None


def test_walk_ins_get_only_open_rules_and_no_points() -> None:
    rules = [
        Rule(id=1, kind="product", name="members", product="socks", discount=D("0.5")),
        Rule(id=2, kind="store", name="open sale", store="store-1", discount=D("0.9"),
             points=D(2), members_only=False),
    ]  # fmt: skip
    got = quote(rules, [line(SOCKS, "4")])
    assert (got.member, got.level, got.total_fen, got.points) == (None, None, 9000, 0)
    assert [f.rule_id for f in got.lines[0].factors] == [2]


def test_level_restricted_rules_apply_only_to_that_level() -> None:
    rules = [Rule(id=1, kind="product", name="gold socks", product="socks", level="gold",
                  discount=D("0.5"))]  # fmt: skip
    assert quote(rules, [line(SOCKS)], who=member("silver")).total_fen == 2500
    assert quote(rules, [line(SOCKS)], who=member("gold"), levels={}).total_fen == 1250


# --- rounding -------------------------------------------------------------------------------


def test_rounding_half_up_to_the_fen_per_line_and_points_floor() -> None:
    rules = [Rule(id=1, kind="product", name="half", product="bread", discount=D("0.5"))]
    got = quote(rules, [line(BREAD, "1", unit=1), line(BREAD, "0.333", unit=1001)], who=member())
    # 1 × 0.95 × 0.5 = 0.475 fen → 0; 1001 × 0.333 = 333.333 → 333 list, × 0.475 = 158.175 → 158
    assert [(ln.list_fen, ln.price_fen) for ln in got.lines] == [(1, 0), (333, 158)]
    assert got.total_fen == 158 and got.points == 2  # floor(1.58 × 1.5) = 2
    half = quote([], [line(BREAD, "1", unit=3)], who=member("x"), levels={
        "x": LevelFactors("x", "X", D("0.5"), D(1))})  # fmt: skip
    assert half.total_fen == 2  # 1.5 fen rounds up


def test_quick_spend_is_one_line_without_a_product() -> None:
    rules = [Rule(id=1, kind="store", name="double", store="store-1", points=D(2))]
    got = quote(rules, [PricedLine(None, D(1), 8888)], who=member())
    assert got.lines[0].product is None and got.lines[0].name is None
    # 88.88 × 0.95 = 84.436 → 84.44 yuan; points floor(84.44 × 1.5 × 2) = 253
    assert (got.total_fen, got.points, got.lines[0].points_factor) == (8444, 253, D(3))


def test_quote_request_needs_exactly_one_kind_of_spend() -> None:
    ok = QuoteRequest.model_validate_json('{"store": "s", "lines": [{"product": "p"}]}')
    assert ok.lines[0].quantity == 1
    for body in (
        '{"store": "s"}',
        '{"store": "s", "amount_fen": 5, "lines": [{"product": "p"}]}',
        '{"store": "s", "lines": [{"quantity": 1}]}',
        '{"store": "s", "lines": [{"product": "p", "quantity": 0}]}',
        '{"store": "s", "lines": [{"product": "p", "quantity": "1.0001"}]}',
        '{"store": "s", "amount_fen": "5"}',
        '{"store": "s", "amount_fen": -1}',
        '{"store": "s", "amount_fen": 5, "extra": 1}',
    ):
        with pytest.raises(ValidationError):
            QuoteRequest.model_validate_json(body)


# --- properties -----------------------------------------------------------------------------

FACTORS = st.decimals(min_value=0, max_value=3, places=4, allow_nan=False, allow_infinity=False)
DISCOUNTS = st.decimals(min_value=0, max_value=1, places=4, allow_nan=False, allow_infinity=False)


@st.composite
def rule_sets(draw: st.DrawFn, discounts: st.SearchStrategy[Decimal]) -> list[Rule]:
    kinds = draw(
        st.lists(
            st.sampled_from(["product", "category", "store", "time_slot", "order_amount"]),
            max_size=8,
        )
    )
    rules = []
    for n, kind in enumerate(kinds, start=1):
        extra: dict[str, Any] = {
            "product": {"product": draw(st.sampled_from(["bread", "cake", "socks"]))},
            "category": {"category": draw(st.sampled_from(["bakery", "clothing"]))},
            "store": {"store": "store-1"},
            "time_slot": {"slot": "weekly", "slot_days": frozenset({3})},
            "order_amount": {"min_fen": draw(st.integers(0, 50_000))},
        }[kind]
        rules.append(
            Rule(
                id=n,
                kind=kind,
                name=f"r{n}",
                discount=draw(discounts),
                points=draw(FACTORS),
                members_only=draw(st.booleans()),
                **extra,
            )
        )
    return rules


LINES = st.lists(
    st.builds(
        PricedLine,
        st.sampled_from([BREAD, CAKE, SOCKS]),
        st.decimals(min_value="0.001", max_value=1000, places=3),
        st.integers(0, 10**7),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(rules=rule_sets(FACTORS), lines=LINES, is_member=st.booleans())
def test_prices_are_never_negative_and_factors_multiply(
    rules: list[Rule], lines: list[PricedLine], is_member: bool
) -> None:
    got = quote(rules, lines, who=member() if is_member else None)
    assert got.total_fen == sum(ln.price_fen for ln in got.lines) >= 0
    assert got.points == sum(ln.points for ln in got.lines) >= 0
    for priced, given_line in zip(got.lines, lines, strict=True):
        assert priced.list_fen == round_fen(given_line.unit_price_fen * given_line.quantity)
        discount, points = Decimal(1), Decimal(1)
        for factor in priced.factors:
            discount *= factor.discount
            points *= factor.points
        assert (priced.discount_factor, priced.points_factor) == (discount, points)
        assert priced.price_fen == round_fen(priced.list_fen * discount) >= 0
        if not is_member:
            assert priced.points == 0
            assert all(f.kind not in ("level", "order_amount") for f in priced.factors)


@settings(max_examples=200, deadline=None)
@given(rules=rule_sets(DISCOUNTS), lines=LINES)
def test_never_above_list_when_every_discount_is_at_most_one(
    rules: list[Rule], lines: list[PricedLine]
) -> None:
    got = quote(rules, lines, who=member())
    assert all(0 <= ln.price_fen <= ln.list_fen for ln in got.lines)
    assert got.total_fen <= got.list_fen


@settings(max_examples=100, deadline=None)
@given(present=st.sets(st.sampled_from(["weekly", "monthly", "yearly", "date"]), min_size=1))
def test_the_highest_priority_matching_slot_wins(present: set[str]) -> None:
    shapes = {
        "weekly": {"slot_days": frozenset({3})},
        "monthly": {"slot_days": frozenset({4})},
        "yearly": {"slot_date": "03-04"},
        "date": {"slot_date": "2026-03-04"},
    }
    rules = [
        Rule(id=n, kind="time_slot", name=slot, slot=slot, **shapes[slot])
        for n, slot in enumerate(sorted(present, reverse=True), start=1)
    ]
    got = quote(rules, [line(SOCKS)], who=member())
    best = max(present, key=["weekly", "monthly", "yearly", "date"].index)
    assert [f.reason.split(" (")[0] for f in got.lines[0].factors[1:]] == [f"time slot {best}"]


@given(list_fen=st.integers(0, 10**12), basis=st.integers(0, 10_000))
def test_round_fen_is_half_up_integer_arithmetic(list_fen: int, basis: int) -> None:
    assert (
        round_fen(list_fen * (Decimal(basis) / 10_000)) == (list_fen * basis * 2 + 10_000) // 20_000
    )


# --- rule bodies ----------------------------------------------------------------------------

RULE_FIELDS = {
    "store": st.sampled_from(["store-1", "s 1", None]),
    "level": st.sampled_from(["gold", None, ""]),
    "members_only": st.booleans(),
    "discount": st.one_of(st.decimals(-1, 12, places=5), st.sampled_from(["0.9", "x", 1.5])),
    "points": st.one_of(st.decimals(-1, 120, places=5), st.sampled_from(["2", True])),
    "product": st.sampled_from(["bread", None]),
    "category": st.sampled_from(["bakery", None]),
    "birthday_window": st.sampled_from(["day", "week", "month", "year"]),
    "slot": st.sampled_from(["weekly", "monthly", "yearly", "date", "hourly"]),
    "days": st.lists(st.integers(-1, 40), max_size=5),
    "date": st.sampled_from(["03-04", "02-30", "13-01", "2026-03-04", "2026-02-30", "x"]),
    "from_time": st.sampled_from(["09:00", "24:00", "25:00", "9:00"]),
    "until_time": st.sampled_from(["10:30", "08:00", "24:00"]),
    "min_fen": st.integers(-5, 10**16),
    "max_fen": st.integers(-5, 10**16),
    "extra_discount_percent": st.decimals(-1, 101, places=3),
    "extra_points_percent": st.decimals(-1, 10_001, places=3),
}


VALID_BASES: dict[str, list[dict[str, Any]]] = {
    "level": [{"level": "gold"}],
    "product": [{"product": "bread"}],
    "category": [{"category": "bakery"}],
    "birthday": [{"birthday_window": "week"}],
    "store": [{"store": "store-1"}],
    "time_slot": [
        {"slot": "weekly", "days": [1, 3]},
        {"slot": "monthly", "days": [31]},
        {"slot": "yearly", "date": "02-29"},
        {"slot": "date", "date": "2026-03-04", "from_time": "09:00", "until_time": "24:00"},
    ],
    "order_amount": [{"min_fen": 10_000, "max_fen": 90_000, "extra_discount_percent": "5"}],
}


@st.composite
def rule_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid body of a random kind, then up to three fields set to random, often bad, values."""
    kind = draw(st.sampled_from([*KIND_FIELDS, "bogus"]))
    body: dict[str, Any] = {"kind": kind, "name": draw(st.sampled_from(["r", "r", ""]))}
    body.update(draw(st.sampled_from(VALID_BASES.get(kind, [{}]))))
    for name in draw(st.sets(st.sampled_from(sorted(RULE_FIELDS)), max_size=3)):
        value = draw(RULE_FIELDS[name])
        body[name] = str(value) if isinstance(value, Decimal) else value
    return body


@settings(max_examples=400, deadline=None)
@given(body=rule_bodies())
def test_rule_bodies_validate_or_fail_cleanly_and_store_faithfully(body: dict[str, Any]) -> None:
    try:
        rule = RuleIn.model_validate_json(json.dumps(body))
    except ValidationError:
        return
    required, _ = KIND_FIELDS[rule.kind]
    assert all(getattr(rule, name) is not None for name in required)
    now = 1
    row = SimpleNamespace(id=1, created_at=now, updated_at=now, **rule_columns(rule))
    stored = rule_of(row)
    if rule.kind == "order_amount":
        assert stored.discount == 1 - rule.extra_discount_percent / 100
        assert stored.points == 1 + rule.extra_points_percent / 100
        assert stored.members_only
    else:
        assert (stored.discount, stored.points) == (rule.discount, rule.points)
        assert 0 <= stored.discount <= 10 and 0 <= stored.points <= 100
    assert stored.slot_days == frozenset(rule.days or ())
    out = rule_out(row)
    assert out["days"] == (sorted(set(rule.days)) if rule.days else None)
    assert (out["from_time"], out["until_time"]) == (rule.from_time, rule.until_time)

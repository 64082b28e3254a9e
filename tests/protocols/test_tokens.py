"""The token classifier: every kind, the method rules, scanner noise, and a fuzzer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.protocols.checks import (
    gb11643_check_char,
    gb11643_valid,
    luhn_check_digit,
    luhn_valid,
)
from gatewayd.protocols.errors import ProtocolError
from gatewayd.protocols.tokens import (
    Method,
    RepeatSuppressor,
    TokenError,
    TokenKind,
    classify,
    mask,
)

MEMBER_CODE = "96" + "12345678901234567"
MEMBER_CODE += luhn_check_digit(MEMBER_CODE)
CONSUMPTION = "97" + "1234567890123456789"
CONSUMPTION += luhn_check_digit(CONSUMPTION)


@pytest.mark.parametrize(
    ("raw", "method", "kind"),
    [
        ("134567890123456789", "barcode", TokenKind.WECHAT_PAYMENT_CODE),
        ("104567890123456789", "face", TokenKind.WECHAT_PAYMENT_CODE),
        ("284567890123456789", "palm", TokenKind.ALIPAY_PAYMENT_CODE),
        ("2545678901234567", "barcode", TokenKind.ALIPAY_PAYMENT_CODE),
        ("304567890123456789012345", "barcode", TokenKind.ALIPAY_PAYMENT_CODE),
        ("6212345678901234567", "barcode", TokenKind.UNIONPAY_PAYMENT_CODE),
        ("13800138000", "barcode", TokenKind.PHONE),
        ("13800138000", "manual", TokenKind.PHONE),
        ("11010519491231002X", "barcode", TokenKind.ID_NUMBER),
        ("440524188001010014", "id_card", TokenKind.ID_NUMBER),
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ", "barcode", TokenKind.LEGACY_MEMBER_CODE),
        (MEMBER_CODE, "barcode", TokenKind.MEMBER_CODE),
        (CONSUMPTION, "barcode", TokenKind.CONSUMPTION_CODE),
        ("4111111111111111", "magstripe", TokenKind.CARD_NUMBER),
        ("04A1B2C3", "ic_card", TokenKind.IC_UID),
        ("12345678", "ic_card", TokenKind.IC_UID),
        ("<<>>", "barcode", TokenKind.UNKNOWN),
    ],
)
def test_kinds(raw: str, method: str, kind: TokenKind) -> None:
    assert classify(raw, method).kind is kind


def test_method_decides_ambiguous_18_digits() -> None:
    # A valid Beijing ID number (region 11) is also WeChat-shaped (prefix 11, 18 digits).
    first17 = "11010519491231002"
    value = first17 + gb11643_check_char(first17)
    if not value.isdigit():
        first17 = "11010519491231003"
        value = first17 + gb11643_check_char(first17)
    assert value.isdigit() and gb11643_valid(value)
    assert classify(value, Method.ID_CARD).kind is TokenKind.ID_NUMBER
    assert classify(value, Method.BARCODE).kind is TokenKind.WECHAT_PAYMENT_CODE
    assert classify(value, Method.MANUAL).kind is TokenKind.ID_NUMBER


def test_bad_check_digits_are_unknown_before_any_lookup() -> None:
    wrong = MEMBER_CODE[:-1] + str((int(MEMBER_CODE[-1]) + 1) % 10)
    token = classify(wrong)
    assert token.kind is TokenKind.UNKNOWN
    assert "check digit" in str(token.extra["reason"])
    assert classify("110105194912310020", Method.ID_CARD).kind is TokenKind.UNKNOWN


def test_scanner_noise_and_double_emission() -> None:
    legacy = "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ"
    assert classify(f"{legacy}{legacy}\r\n").value == legacy
    assert classify(" 13800138000\r").value == "13800138000"
    doubled = classify("134567890123456789134567890123456789")
    assert doubled.kind is TokenKind.WECHAT_PAYMENT_CODE
    assert doubled.value == "134567890123456789"
    # "11111111" is a card number in its own right: never halved.
    assert classify("11111111").value == "11111111"


def test_aim_prefix_is_kept_apart() -> None:
    token = classify("]C013800138000")
    assert token.kind is TokenKind.PHONE
    assert token.extra["aim"] == "]C0"


def test_caller_id_numbers() -> None:
    assert classify("+8613800138000", "caller_id").value == "13800138000"
    landline = classify("01062345678", "caller_id")
    assert landline.kind is TokenKind.PHONE and landline.extra["mobile"] is False


def test_empty_and_oversized_inputs_raise_token_error() -> None:
    with pytest.raises(TokenError):
        classify("\r\n")
    with pytest.raises(TokenError):
        classify("9" * 5000)


def test_luhn_and_mask() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("5350290149345177")
    assert not luhn_valid("4111111111111112")
    assert mask("13800138000") == "*******8000"
    assert mask("12") == "**"


def test_repeat_suppressor_window() -> None:
    sup = RepeatSuppressor(window=0.5)
    assert not sup.is_repeat("d1", "x", 10.0)
    assert sup.is_repeat("d1", "x", 10.3)
    assert not sup.is_repeat("d2", "x", 10.3)
    assert not sup.is_repeat("d1", "x", 11.0)


@settings(max_examples=5000, deadline=None)
@given(st.text(max_size=80), st.sampled_from(list(Method)))
def test_fuzz_classify_only_raises_protocol_error(text: str, method: Method) -> None:
    try:
        token = classify(text, method)
    except ProtocolError:
        return
    assert token.kind in TokenKind
    assert token.value

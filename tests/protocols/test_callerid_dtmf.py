"""DTMF caller ID variants, DLE-shielded voice-modem digits and the keypad password collector."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.protocols.callerid import AbsenceReason, Call, CallerIdError
from gatewayd.protocols.callerid_dtmf import (
    DleDecoder,
    DleEvent,
    DtmfCollector,
    DtmfDecoder,
    DtmfDigit,
    decode_dtmf,
    encode_dle_digits,
    encode_dtmf,
)
from gatewayd.protocols.errors import ProtocolError

PRIVATE, UNAVAILABLE = AbsenceReason.PRIVATE, AbsenceReason.UNAVAILABLE


@pytest.mark.parametrize(
    ("digits", "call"),
    [
        ("A13800138000C", Call(number="13800138000")),
        ("A13800138000#", Call(number="13800138000")),
        ("D0227654321C", Call(number="0227654321")),
        ("A5551234D5550000C", Call(number="5551234")),
        ("A5551234D5550000B10C", Call(number="5551234")),
        ("B00", Call(reason=UNAVAILABLE)),
        ("B10", Call(reason=PRIVATE)),
        ("B10C", Call(reason=PRIVATE)),
        ("D1#", Call(reason=PRIVATE)),
        ("D2#", Call(reason=UNAVAILABLE)),
        ("D3#", Call(reason=UNAVAILABLE)),
    ],
)
def test_variants(digits: str, call: Call) -> None:
    assert decode_dtmf(digits) == [call]


def test_stream_with_noise_between_messages() -> None:
    text = "12# A13800138000C\n 9 D1# * B00 C A0101#"
    assert decode_dtmf(text) == [
        Call(number="13800138000"),
        Call(reason=PRIVATE),
        Call(reason=UNAVAILABLE),
        Call(number="0101"),
    ]


@pytest.mark.parametrize(
    ("digits", "reason"),
    [
        ("D4#", "D1#/D2#/D3#"),
        ("B#", "A<number>#"),
        ("B22", "neither 00 nor 10"),
        ("A12A34C", "A…D…B…C"),
        ("A1*2C", "not digits"),
        ("A#", "no number and no reason"),
        ("A123", "no end code"),
        ("A" + "1" * 41, "longer than 40"),
        ("A12X", "not a DTMF digit"),
    ],
)
def test_malformed_messages(digits: str, reason: str) -> None:
    with pytest.raises(CallerIdError, match=reason):
        decode_dtmf(digits)


def test_decoder_goes_on_after_a_bad_message() -> None:
    decoder = DtmfDecoder()
    decoder.feed(b"D9#A42C")
    with pytest.raises(CallerIdError):
        decoder.next_item()
    assert decoder.next_item() == Call(number="42")
    assert decoder.next_item() is None


def test_one_digit_at_a_time() -> None:
    decoder = DtmfDecoder()
    got = []
    for char in "A123CD1#B10":
        decoder.feed(char)
        while (call := decoder.next_item()) is not None:
            got.append(call)
    assert got == [Call(number="123"), Call(reason=PRIVATE), Call(reason=PRIVATE)]


def test_encoder_styles() -> None:
    call = Call(number="13800138000")
    assert encode_dtmf(call) == "A13800138000C"
    assert encode_dtmf(call, style="hash") == "A13800138000#"
    assert encode_dtmf(call, style="taiwan") == "D13800138000C"
    assert encode_dtmf(Call(reason=PRIVATE)) == "B10C"
    assert encode_dtmf(Call(reason=UNAVAILABLE)) == "B00C"
    assert encode_dtmf(Call(reason=PRIVATE), style="hash") == "D1#"
    assert encode_dtmf(Call(reason=UNAVAILABLE), style="hash") == "D3#"


@settings(max_examples=500, deadline=None)
@given(
    number=st.one_of(st.none(), st.from_regex(r"[0-9]{1,30}", fullmatch=True)),
    reason=st.sampled_from([PRIVATE, UNAVAILABLE]),
    style=st.sampled_from(["c", "hash", "taiwan"]),
)
def test_round_trip(number: str | None, reason: AbsenceReason, style: str) -> None:
    call = Call(number=number) if number else Call(reason=reason)
    assert decode_dtmf(encode_dtmf(call, style=style)) == [call]  # type: ignore[arg-type]


@settings(max_examples=5000, deadline=None)
@given(text=st.text(alphabet="0123456789*#ABCDabcd \nXé", max_size=60))
def test_fuzz_only_callerid_error_escapes(text: str) -> None:
    for chunks in ([text], list(text)):
        decoder = DtmfDecoder()
        for chunk in [*chunks, ""]:
            decoder.feed(chunk)
            while True:
                try:
                    call = decoder.next_item()
                except CallerIdError:
                    continue
                except ProtocolError as exc:  # pragma: no cover - the assertion
                    pytest.fail(f"foreign ProtocolError {exc!r}")
                if call is None:
                    break
                assert call.number is not None or call.reason is not None


# ---- DLE-shielded digits ---------------------------------------------------------------


def drain(decoder: DleDecoder) -> list[DtmfDigit | DleEvent]:
    out: list[DtmfDigit | DleEvent] = []
    while (item := decoder.next_item()) is not None:
        out.append(item)
    return out


def test_dle_digits_literal_dle_and_events() -> None:
    decoder = DleDecoder()
    decoder.feed(b"\x7f\x80\x10\x10\x11\x101\x10#\x10b\x10\x03\x10!\x10Z\x10*")
    assert drain(decoder) == [
        DtmfDigit(digit="1"),
        DtmfDigit(digit="#"),
        DleEvent(code="b", name="busy"),
        DleEvent(code="\x03", name="end_of_data"),
        DleEvent(code="!", name="abort"),
        DleEvent(code="Z", name="unknown"),
        DtmfDigit(digit="*"),
    ]


def test_dle_split_across_feeds_and_doubled_dle_before_digit() -> None:
    decoder = DleDecoder()
    decoder.feed(b"\x00\x10")
    assert drain(decoder) == []
    decoder.feed(b"5\x10\x10" + b"5")  # the second 5 follows a literal DLE: audio, not a digit
    assert drain(decoder) == [DtmfDigit(digit="5")]


@pytest.mark.parametrize("shielded", [False, True])
def test_password_from_a_phone_keypad(shielded: bool) -> None:
    stream = b"\x00\x01" + encode_dle_digits("12*9876#", shielded=shielded) + b"\x10\x10"
    decoder = DleDecoder()
    decoder.feed(stream)
    collector = DtmfCollector()
    passwords = [
        collector.push(item.digit) for item in drain(decoder) if isinstance(item, DtmfDigit)
    ]
    assert [p for p in passwords if p is not None] == ["9876"]


def test_collector_limits_and_validation() -> None:
    collector = DtmfCollector(max_digits=3)
    for digit in "123":
        assert collector.push(digit) is None
    with pytest.raises(CallerIdError, match="more than 3"):
        collector.push("4")
    assert collector.push("#") == ""
    with pytest.raises(CallerIdError):
        collector.push("x")
    with pytest.raises(CallerIdError):
        DtmfCollector(submit="#", clear="#")
    with pytest.raises(CallerIdError):
        encode_dle_digits("12x")


@settings(max_examples=5000, deadline=None)
@given(data=st.binary(max_size=64), digits=st.text(alphabet="0123456789*#ABCD", max_size=8))
def test_fuzz_dle_never_raises_and_finds_encoded_digits(data: bytes, digits: str) -> None:
    clean = data.replace(b"\x10", b"\x10\x10")  # audio bytes with their DLEs doubled
    for stream in (data, clean + encode_dle_digits(digits)):
        whole = DleDecoder()
        whole.feed(stream)
        split = DleDecoder()
        for byte in stream:
            split.feed(bytes([byte]))
        assert drain(whole) == drain(split)
    decoder = DleDecoder()
    decoder.feed(clean + encode_dle_digits(digits))
    assert "".join(i.digit for i in drain(decoder) if isinstance(i, DtmfDigit)) == digits

"""ESC/POS sans-I/O part: status replies (DLE EOT 4) and slip text layout, by value and fuzzed."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.protocols.escpos import (
    DLE_EOT,
    PAPER_END,
    PAPER_NEAR_END,
    PRINTER_OFFLINE,
    kv_line,
    mask_card,
    paper_state,
    text_width,
    yuan,
)

# Bits 1 and 4 of every DLE EOT n reply are fixed at 1, bits 0 and 7 at 0 (ESC/POS manual).
FIXED = 0x12
# Printable text without line breaks: ASCII, CJK ideographs, full-width forms, Latin letters.
LINE_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
        st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E),
        st.characters(min_codepoint=0xC0, max_codepoint=0xFF),
    ),
    max_size=40,
)


def test_status_constants_are_the_esc_pos_ones() -> None:
    assert bytes([0x10, 0x04]) == DLE_EOT
    assert PRINTER_OFFLINE == 0x08
    assert (PAPER_NEAR_END, PAPER_END) == (0x0C, 0x60)


@pytest.mark.parametrize(
    ("reply", "paper"),
    [
        (0x12, "ok"),  # only the fixed bits
        (0x16, "near_end"),  # bit 2: near-end sensor
        (0x1E, "near_end"),  # bits 2-3
        (0x32, "out"),  # bit 5: paper-end sensor
        (0x72, "out"),  # bits 5-6
        (0x7E, "out"),  # paper out wins over near end
    ],
)
def test_paper_state_known_replies(reply: int, paper: str) -> None:
    assert paper_state(reply) == paper


@given(st.integers(min_value=0, max_value=255))
def test_paper_state_reads_only_the_sensor_bits(reply: int) -> None:
    paper = paper_state(reply)
    assert paper in ("ok", "near_end", "out")
    assert paper_state(reply & (PAPER_END | PAPER_NEAR_END)) == paper
    assert paper_state(reply | FIXED) == paper
    assert paper_state(reply | 0x20) == "out"
    assert (paper == "ok") == (reply & (PAPER_END | PAPER_NEAR_END) == 0)


def test_text_width_counts_cjk_twice() -> None:
    assert text_width("Points") == 6
    assert text_width("储值余额") == 8
    assert text_width("金卡 Gold") == 9
    assert text_width("") == 0


@given(LINE_TEXT, LINE_TEXT)
def test_text_width_adds_up_and_bounds(a: str, b: str) -> None:
    assert text_width(a + b) == text_width(a) + text_width(b)
    assert len(a) <= text_width(a) <= 2 * len(a)


def test_kv_line_known_layouts() -> None:
    assert kv_line("积分", "1280", 16) == "积分" + " " * 8 + "1280"
    assert kv_line("Balance", "123.45 CNY", 16) == "Balance\n" + " " * 6 + "123.45 CNY"


@given(LINE_TEXT, LINE_TEXT, st.integers(min_value=16, max_value=96))
def test_kv_line_fills_the_width_or_breaks(label: str, value: str, width: int) -> None:
    out = kv_line(label, value, width)
    if text_width(label) + text_width(value) < width:
        assert "\n" not in out
        assert out.startswith(label) and out.endswith(value)
        assert text_width(out) == width
        assert out[len(label) : len(out) - len(value)].strip(" ") == ""
    else:
        first, second = out.split("\n")
        assert first == label
        assert second.endswith(value)
        assert second[: len(second) - len(value)].strip(" ") == ""
        assert text_width(second) == max(width, text_width(value))


@pytest.mark.parametrize(
    ("number", "masked"),
    [("8800123456781234", "****1234"), ("12345", "****2345"), ("1234", "****"), ("", "****")],
)
def test_mask_card_known(number: str, masked: str) -> None:
    assert mask_card(number) == masked


@given(st.text(alphabet="0123456789ABCDEF", max_size=30), st.text(alphabet="0123", max_size=30))
def test_mask_card_shows_at_most_four_and_not_the_length(number: str, other: str) -> None:
    masked = mask_card(number)
    assert masked.startswith("****")
    assert len(masked) <= 8
    shown = masked[4:]
    assert len(shown) <= 4 and number.endswith(shown)
    if len(number) > 4 and len(other) > 4:
        # Same last four characters: same mask, whatever the lengths.
        assert mask_card(other[:-4] + number[-4:]) == masked


@pytest.mark.parametrize(
    ("fen", "text"), [(0, "0.00"), (5, "0.05"), (12345, "123.45"), (-1234, "-12.34"), (-5, "-0.05")]
)
def test_yuan_known(fen: int, text: str) -> None:
    assert yuan(fen) == text


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_yuan_round_trips_without_floats(fen: int) -> None:
    text = yuan(fen)
    assert re.fullmatch(r"-?\d+\.\d{2}", text)
    assert Decimal(text) * 100 == fen
    assert text.startswith("-") == (fen < 0)

"""Magnetic stripe swipes: known vectors, error tracks, card-number rules, round trips, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.protocols.checks import luhn_valid
from gatewayd.protocols.errors import ProtocolError
from gatewayd.protocols.msr import (
    CardNumberRule,
    MsrError,
    Swipe,
    SwipeDecoder,
    decode_swipe,
    decode_swipes,
    encode_swipe,
    format_track1,
    format_track2,
    pick_card_number,
)

# sualeh/magnetictrackparser README, with its elided track-1 discretionary data filled in.
EXAMPLE = (
    "%B5350290149345177^FATEHI/SUALEH^1604201000000000000000000000000?"
    ";5350290149345177=16042010000056700100?"
)


def decode_all(decoder: SwipeDecoder) -> list[Swipe]:
    swipes = []
    while (swipe := decoder.next_item()) is not None:
        swipes.append(swipe)
    return swipes


def test_known_example_decodes_both_tracks() -> None:
    swipe = decode_swipe(EXAMPLE + "\r\n")
    one, two = swipe.track1_fields, swipe.track2_fields
    assert one is not None and two is not None
    assert (one.pan, one.name, one.expiry, one.service_code) == (
        "5350290149345177",
        "FATEHI/SUALEH",
        "1604",
        "201",
    )
    assert (one.surname, one.given_name) == ("FATEHI", "SUALEH")
    assert one.pan_valid
    assert (two.pan, two.expiry, two.service_code, two.discretionary) == (
        "5350290149345177",
        "1604",
        "201",
        "0000056700100",
    )
    assert two.pan_valid
    assert swipe.track3 is None and swipe.errors == ()


@pytest.mark.parametrize("pan", ["4111111111111111", "5350290149345177", "371449635398431"])
def test_luhn_examples_are_valid_pans(pan: str) -> None:
    fields = decode_swipe(f";{pan}=25121010000?").track2_fields
    assert fields is not None and fields.pan_valid
    bad = pan[:-1] + str((int(pan[-1]) + 1) % 10)
    fields = decode_swipe(f";{bad}=25121010000?").track2_fields
    assert fields is not None and not fields.pan_valid


def test_trailing_line_end_is_optional() -> None:
    for suffix in ("", "\r", "\n", "\r\n"):
        assert decode_swipe(EXAMPLE + suffix).track2 == "5350290149345177=16042010000056700100"


def test_error_tracks_are_listed_and_do_not_hide_good_ones() -> None:
    swipe = decode_swipe("%E?;6012345678901234=2512?+E?")
    assert swipe.errors == (1, 3)
    assert swipe.track1 is None and swipe.track3 is None
    assert swipe.track2 == "6012345678901234=2512"


@pytest.mark.parametrize("line", ["%E?", "%E?;E?", "%E?;E?+E?", ";E?"])
def test_swipe_with_no_readable_track_raises(line: str) -> None:
    with pytest.raises(MsrError, match="no readable track"):
        decode_swipe(line)


def test_track3_sentinels() -> None:
    after_track2 = decode_swipe(";123=4?;0123456789?")
    assert (after_track2.track2, after_track2.track3) == ("123=4", "0123456789")
    plus = decode_swipe("+0123456789?")
    assert (plus.track2, plus.track3) == (None, "0123456789")
    after_error = decode_swipe(";E?;42?")
    assert after_error.errors == (2,) and after_error.track3 == "42"


def test_track2_without_separator_is_a_bare_pan() -> None:
    fields = decode_swipe(";1234567890?").track2_fields
    assert fields is not None
    assert (fields.pan, fields.expiry, fields.service_code, fields.discretionary) == (
        "1234567890",
        None,
        None,
        "",
    )


def test_absent_expiry_and_service_code_use_separators() -> None:
    one = decode_swipe("%B4111111111111111^DOE/JOHN^^^12345?").track1_fields
    assert one is not None and (one.expiry, one.service_code) == (None, None)
    two = decode_swipe(";4111111111111111===999?").track2_fields
    assert two is not None and (two.expiry, two.service_code, two.discretionary) == (
        None,
        None,
        "999",
    )


def test_track1_not_format_b_keeps_raw_only() -> None:
    swipe = decode_swipe("%MEMBER 00042?")
    assert swipe.track1 == "MEMBER 00042" and swipe.track1_fields is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("hello", "outside any track"),
        ("%B123^X", "no end sentinel"),
        (";12a4?", "character set"),
        (";123?;456?;789?", "twice"),
        ("%abc?", "character set"),
        (";" + "1" * 41 + "?", "max 40"),
        ("%" + "A" * 80 + "?", "max 79"),
        ("%é?", "character set"),
    ],
)
def test_malformed_swipes_raise_msr_error(line: str, reason: str) -> None:
    with pytest.raises(MsrError, match=reason):
        decode_swipe(line)


def test_percent_starts_a_new_swipe_without_line_end() -> None:
    swipes = decode_swipes(EXAMPLE + EXAMPLE)
    assert len(swipes) == 2 and swipes[0] == swipes[1]


def test_empty_lines_are_not_swipes() -> None:
    assert decode_swipes("\r\n\r\n;123?\r\n\r\n") == [Swipe(track2="123")]


def test_incremental_feed_matches_whole_input() -> None:
    data = (EXAMPLE + "\r\n%E?;42?\r\n+77?\n").encode()
    decoder = SwipeDecoder()
    out: list[Swipe] = []
    for byte in data:
        decoder.feed(bytes([byte]))
        out += decode_all(decoder)
    decoder.feed(b"")
    out += decode_all(decoder)
    assert out == decode_swipes(data)
    assert len(out) == 3


def test_swipe_waits_for_line_end_or_idle_timer() -> None:
    decoder = SwipeDecoder()
    decoder.feed(";123?")
    assert decoder.next_item() is None
    decoder.end_swipe()
    assert decoder.next_item() == Swipe(track2="123")


def test_bad_swipe_does_not_break_the_decoder() -> None:
    decoder = SwipeDecoder()
    decoder.feed("%E?;E?\r\n;55?\r\n")
    with pytest.raises(MsrError):
        decoder.next_item()
    assert decoder.next_item() == Swipe(track2="55")


def test_overlong_line_is_dropped_with_one_error() -> None:
    decoder = SwipeDecoder(max_line=64)
    decoder.feed(";" + "1" * 100)
    decoder.feed("1" * 100 + "?\r\n;42?\r\n")
    with pytest.raises(MsrError, match="longer than 64"):
        decoder.next_item()
    assert decoder.next_item() == Swipe(track2="42")
    assert decoder.next_item() is None


def test_card_number_rules() -> None:
    swipe = decode_swipe(EXAMPLE)
    assert pick_card_number(swipe) == "5350290149345177"
    assert pick_card_number(swipe, CardNumberRule(track=1, field="pan")) == "5350290149345177"
    assert pick_card_number(swipe, CardNumberRule(track=1, field="name")) == "FATEHI/SUALEH"
    sliced = CardNumberRule(track=2, field="discretionary", start=4, stop=10)
    assert pick_card_number(swipe, sliced) == "056700"
    regex = CardNumberRule(track=2, field="raw", pattern=r"=\d{7}(?P<number>\d{6})")
    assert pick_card_number(swipe, regex) == "000005"
    group = CardNumberRule(track=2, field="pan", pattern=r"^\d{4}(\d{4})")
    assert pick_card_number(swipe, group) == "2901"
    whole = CardNumberRule(track=2, field="pan", pattern=r"\d{4}$")
    assert pick_card_number(swipe, whole) == "5177"


def test_card_number_rules_fall_through_in_order() -> None:
    swipe = decode_swipe("%E?;E?+0012345678?")
    assert pick_card_number(swipe) is None
    rules = (CardNumberRule(track=2), CardNumberRule(track=3, field="raw", start=2))
    assert pick_card_number(swipe, *rules) == "12345678"
    no_match = CardNumberRule(track=3, field="raw", pattern="X")
    assert pick_card_number(swipe, no_match) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"track": 4},
        {"field": "cvv"},
        {"track": 3, "field": "pan"},
        {"track": 2, "field": "name"},
        {"pattern": "("},
    ],
)
def test_bad_card_number_rules_raise_msr_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(MsrError):
        CardNumberRule(**kwargs)  # type: ignore[arg-type]


def test_encoder_matches_the_example_and_round_trips() -> None:
    track1 = format_track1(
        pan="5350290149345177",
        name="FATEHI/SUALEH",
        expiry="1604",
        service_code="201",
        discretionary="000000000000000000000000",
    )
    track2 = format_track2(
        pan="5350290149345177", expiry="1604", service_code="201", discretionary="0000056700100"
    )
    swipe = Swipe(track1=track1, track2=track2)
    assert encode_swipe(swipe, line_end="") == EXAMPLE
    assert decode_swipe(encode_swipe(swipe)) == swipe


def test_encoder_writes_error_tracks_and_track3_sentinels() -> None:
    swipe = Swipe(track2="42", track3="99", errors=(1,))
    assert encode_swipe(swipe) == "%E?;42?+99?\r"
    assert encode_swipe(swipe, track3_sentinel=";", line_end="\r\n") == "%E?;42?;99?\r\n"
    with pytest.raises(MsrError):
        encode_swipe(Swipe(track3="99"), track3_sentinel=";")
    with pytest.raises(MsrError):
        format_track2(pan="12a")
    with pytest.raises(MsrError):
        format_track1(pan="1234", name="X")


def test_swipe_value_validates_itself() -> None:
    with pytest.raises(MsrError):
        Swipe()
    with pytest.raises(MsrError):
        Swipe(track2="E")
    with pytest.raises(MsrError):
        Swipe(track2="1", errors=(2,))
    with pytest.raises(MsrError):
        Swipe(track2="1", errors=(5,))


track1_data = st.text(
    alphabet=st.sampled_from([chr(c) for c in range(0x20, 0x60) if chr(c) not in "%?"]),
    min_size=2,
    max_size=79,
)
track23_data = st.text(alphabet="0123456789=", min_size=2, max_size=40)


@settings(max_examples=500, deadline=None)
@given(
    one=st.one_of(st.none(), st.just("E"), track1_data),
    two=st.one_of(st.none(), st.just("E"), track23_data),
    three=st.one_of(st.none(), st.just("E"), track23_data.map(lambda t: t[:107])),
    sentinel=st.sampled_from([";", "+"]),
)
def test_round_trip(one: str | None, two: str | None, three: str | None, sentinel: str) -> None:
    tracks = {1: one, 2: two, 3: three}
    errors = tuple(n for n, t in tracks.items() if t == "E")
    data = {n: None if t == "E" else t for n, t in tracks.items()}
    if all(value is None for value in data.values()):
        return
    if sentinel == ";" and two is None:
        sentinel = "+"
    swipe = Swipe(track1=data[1], track2=data[2], track3=data[3], errors=errors)
    assert decode_swipe(encode_swipe(swipe, track3_sentinel=sentinel)) == swipe


@settings(max_examples=200, deadline=None)
@given(pan=st.from_regex(r"[0-9]{12,19}", fullmatch=True))
def test_luhn_flag_follows_checks_module(pan: str) -> None:
    fields = decode_swipe(f";{pan}=2512101?").track2_fields
    assert fields is not None and fields.pan_valid == luhn_valid(pan)


swipe_noise = st.lists(
    st.one_of(
        st.sampled_from(["%", ";", "+", "?", "^", "=", "E", "\r", "\n", "B", "/", " "]),
        st.text(alphabet="0123456789", max_size=25),
        st.text(max_size=5),
        st.just(EXAMPLE),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=5000, deadline=None)
@given(text=swipe_noise, raw=st.binary(max_size=64))
def test_fuzz_only_msr_error_escapes(text: str, raw: bytes) -> None:
    for data in (text.encode("utf-8", "surrogatepass"), raw):
        for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
            decoder = SwipeDecoder(max_line=128)
            for chunk in [*chunks, b""]:
                decoder.feed(chunk)
                while True:
                    try:
                        swipe = decoder.next_item()
                    except MsrError:
                        continue
                    except ProtocolError as exc:  # pragma: no cover - the assertion
                        pytest.fail(f"foreign ProtocolError {exc!r}")
                    if swipe is None:
                        break
                    assert isinstance(swipe, Swipe)
                    swipe.track1_fields, swipe.track2_fields  # noqa: B018

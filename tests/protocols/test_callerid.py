"""Caller ID: modem text (when a call is emitted, rings, replies) and SDMF/MDMF packets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.protocols.callerid import (
    AbsenceReason,
    Call,
    CallerIdError,
    FskDecoder,
    MessageWaiting,
    ModemDecoder,
    ModemReply,
    Ring,
    decode_fsk,
    decode_modem_text,
    encode_mdmf,
    encode_message_waiting,
    encode_modem_text,
    encode_sdmf,
)
from gatewayd.protocols.errors import ProtocolError

Item = Call | Ring | ModemReply


def items(decoder: ModemDecoder, data: bytes = b"", now: float | None = None) -> list[Item]:
    if data:
        decoder.feed(data, now)
    out: list[Item] = []
    while (item := decoder.next_item()) is not None:
        out.append(item)
    return out


ROCKWELL = (
    b"RING\r\n\r\nDATE = 1015\r\nTIME = 2038\r\nNMBR = 8475550001\r\nNAME = U.S.ROBOTICS\r\n"
    b"RING\r\n"
)


def test_default_emits_at_nmbr_without_waiting_for_a_name() -> None:
    decoder = ModemDecoder()
    assert items(decoder, ROCKWELL) == [
        Ring(count=1),
        Call(number="8475550001", date="1015", time="2038", rings=1),
        Ring(count=2),
    ]


def test_wait_for_name_emits_at_name() -> None:
    decoder = ModemDecoder(wait_for_name=True)
    assert items(decoder, ROCKWELL) == [
        Ring(count=1),
        Call(number="8475550001", name="U.S.ROBOTICS", date="1015", time="2038", rings=1),
        Ring(count=2),
    ]


def test_wait_for_name_gives_up_at_the_next_ring() -> None:
    decoder = ModemDecoder(wait_for_name=True)
    got = items(decoder, b"RING\r\nDATE=0330\r\nTIME=1234\r\nNMBR=13800138000\r\n")
    assert got == [Ring(count=1)]
    got = items(decoder, b"RING\r\n")
    assert got == [Call(number="13800138000", date="0330", time="1234", rings=1), Ring(count=2)]


def test_chinese_modem_without_name_before_first_ring() -> None:
    # dot-osk/ATCmd: DATE/TIME/NMBR, no NAME, no spaces around '='.
    decoder = ModemDecoder()
    got = items(
        decoder, b"\r\nDATE=0330\r\nTIME=1234\r\nNMBR=13800138000\r\n\r\nRING\r\n\r\nRING\r\n"
    )
    assert got == [
        Call(number="13800138000", date="0330", time="1234", rings=0),
        Ring(count=1),
        Ring(count=2),
    ]


def test_name_before_number_is_kept() -> None:
    decoder = ModemDecoder()
    got = items(decoder, b"NAME = ALICE\r\nNMBR = 5551234\r\n")
    assert got == [Call(number="5551234", name="ALICE")]


def test_partial_data_is_emitted_at_the_next_ring() -> None:
    decoder = ModemDecoder()
    got = items(decoder, b"RING\r\nDATE = 0101\r\nTIME = 0000\r\nRING\r\n")
    assert got == [Ring(count=1), Call(date="0101", time="0000", rings=1), Ring(count=2)]


def test_flush_and_end_of_input_emit_partial_data() -> None:
    decoder = ModemDecoder(wait_for_name=True)
    assert items(decoder, b"NMBR = 5551234\r\n") == []
    decoder.flush()
    assert items(decoder) == [Call(number="5551234")]
    decoder.feed(b"DATE = 0202\r\nTIME = 0303")
    decoder.feed(b"")
    assert items(decoder) == [Call(date="0202", time="0303")]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("P", AbsenceReason.PRIVATE),
        ("O", AbsenceReason.UNAVAILABLE),
        ("PRIVATE", AbsenceReason.PRIVATE),
        ("OUT OF AREA", AbsenceReason.UNAVAILABLE),
    ],
)
def test_absence_reasons(value: str, reason: AbsenceReason) -> None:
    got = items(ModemDecoder(), f"DATE = 0101\r\nNMBR = {value}\r\n".encode())
    assert got == [Call(date="0101", reason=reason)]


def test_name_absence_reason_when_number_also_missing() -> None:
    decoder = ModemDecoder(wait_for_name=True)
    got = items(decoder, b"NMBR = \r\nNAME = P\r\n")
    assert got == [Call(reason=AbsenceReason.PRIVATE)]


def test_ddn_nmbr_junk_before_name_and_first_number_wins() -> None:
    decoder = ModemDecoder(wait_for_name=True)
    got = items(decoder, b"DDN_NMBR= 8005551212\r\nNMBR = 5551234\r\n\x00\x7f NAME = BOB\r\n")
    assert got == [Call(number="8005551212", name="BOB")]


def test_mesg_lines_are_kept_as_hex() -> None:
    decoder = ModemDecoder(wait_for_name=True)
    got = items(decoder, b"MESG = 06014C\r\nNMBR = 5551234\r\nNAME = X\r\n")
    assert got == [Call(number="5551234", name="X", messages=("06014C",))]


def test_replies_and_echo() -> None:
    decoder = ModemDecoder()
    got = items(
        decoder, b"AT+VCID=1\r\r\nOK\r\nAT#CID=1\r\nERROR\r\nNO CARRIER\r\nCONNECT 9600\r\n"
    )
    assert got == [
        ModemReply(text="OK"),
        ModemReply(text="ERROR"),
        ModemReply(text="NO CARRIER"),
        ModemReply(text="CONNECT 9600"),
    ]


def test_distinctive_ring_cadence() -> None:
    assert items(ModemDecoder(), b"RING A\r\nRING B\r\n") == [
        Ring(count=1, cadence="A"),
        Ring(count=2, cadence="B"),
    ]


def test_new_caller_id_block_starts_a_new_call() -> None:
    decoder = ModemDecoder()
    data = ROCKWELL + b"RING\r\nDATE = 1016\r\nNMBR = 111\r\nRING\r\n"
    got = items(decoder, data)
    calls = [item for item in got if isinstance(item, Call)]
    assert calls == [
        Call(number="8475550001", date="1015", time="2038", rings=1),
        Call(number="111", date="1016", rings=0),
    ]
    assert got[-1] == Ring(count=1)


def test_timestamps_end_a_ring_sequence() -> None:
    decoder = ModemDecoder(ring_gap=8.0)
    assert items(decoder, b"RING\r\n", now=0.0) == [Ring(count=1)]
    assert items(decoder, b"NMBR = 111\r\n", now=1.0)[0] == Call(number="111", rings=1)
    assert items(decoder, b"RING\r\n", now=6.0) == [Ring(count=2)]
    assert items(decoder, b"RING\r\n", now=30.0) == [Ring(count=1)]
    assert items(decoder, b"NMBR = 222\r\n", now=31.0) == [Call(number="222", rings=1)]


def test_bad_lines_raise_and_the_decoder_goes_on() -> None:
    decoder = ModemDecoder()
    decoder.feed(b"DATE = 1399\r\nTIME = 2561\r\nDATE = 12\r\nNMBR = 5551234\r\n")
    for reason in ("calendar day", "time of day", "neither MMDD"):
        with pytest.raises(CallerIdError, match=reason):
            decoder.next_item()
    assert decoder.next_item() == Call(number="5551234")


def test_date_with_time_in_one_field() -> None:
    assert items(ModemDecoder(), b"DATE = 03301234\r\nNMBR = 1\r\n") == [
        Call(number="1", date="0330", time="1234")
    ]


def test_overlong_line_is_dropped_with_one_error() -> None:
    decoder = ModemDecoder(max_line=32)
    decoder.feed(b"NAME = " + b"X" * 40)
    decoder.feed(b"Y" * 40 + b"\r\nNMBR = 7\r\n")
    with pytest.raises(CallerIdError, match="longer than 32"):
        decoder.next_item()
    assert decoder.next_item() == Call(number="7")


def test_byte_at_a_time_matches_whole() -> None:
    data = ROCKWELL + b"RING\r\nOK\r\nDATE=0101\r\nNMBR=P\r\nRING A\r\n"
    whole = items(ModemDecoder(), data)
    decoder = ModemDecoder()
    split: list[Item] = []
    for byte in data:
        split += items(decoder, bytes([byte]))
    assert split == whole and len(whole) == 7


calls = st.builds(
    Call,
    number=st.one_of(st.none(), st.from_regex(r"\+?[0-9]{3,20}", fullmatch=True)),
    name=st.one_of(
        st.none(),
        st.from_regex(r"[A-Z][A-Z .,]{0,14}[A-Z]", fullmatch=True).filter(
            lambda n: n not in ("PRIVATE", "OUT OF AREA", "UNAVAILABLE")
        ),
    ),
    date=st.builds(lambda m, d: f"{m:02d}{d:02d}", st.integers(1, 12), st.integers(1, 31)),
    time=st.builds(lambda h, m: f"{h:02d}{m:02d}", st.integers(0, 23), st.integers(0, 59)),
).map(
    lambda c: (
        c
        if c.number is not None
        else Call(name=c.name, date=c.date, time=c.time, reason=AbsenceReason.PRIVATE)
    )
)


@settings(max_examples=500, deadline=None)
@given(call=calls, spaces=st.booleans())
def test_modem_text_round_trip(call: Call, spaces: bool) -> None:
    data = encode_modem_text(call, spaces=spaces)
    expected = Call(
        number=call.number,
        name=call.name,
        date=call.date,
        time=call.time,
        reason=call.reason,
        rings=1,
    )
    assert decode_modem_text(data) == [expected]


# ---- SDMF / MDMF ---------------------------------------------------------------------


def test_melabs_sdmf_example() -> None:
    packet = bytes.fromhex("04 12 30 39 33 30 31 32 32 34 36 30 39 35 35 35 31 32 31 32 51")
    assert decode_fsk(packet) == [Call(number="6095551212", date="0930", time="1224")]
    assert encode_sdmf(Call(number="6095551212", date="0930", time="1224")) == packet


def test_melabs_blocked_and_mdmf_examples_have_wrong_checksums() -> None:
    # The same page's other two examples do not sum to 0 mod 256 (their checksums should be
    # 0E and 84); a decoder that accepted them would accept line noise too.
    blocked = bytes.fromhex("04 09 30 39 33 30 31 32 32 34 50 12")
    mdmf = bytes.fromhex(
        "80 20 01 08 30 33 32 34 30 39 30 32 07 08 4A 4F 48 4E 20 44 4F 45"
        " 02 0A 38 30 30 35 35 35 31 32 31 32 7D"
    )
    for packet in (blocked, mdmf):
        with pytest.raises(CallerIdError, match="checksum mismatch"):
            decode_fsk(packet)
    call = Call(date="0930", time="1224", reason=AbsenceReason.PRIVATE)
    assert decode_fsk(blocked[:-1] + b"\x0e") == [call]
    assert encode_sdmf(call) == blocked[:-1] + b"\x0e"
    assert decode_fsk(mdmf[:-1] + b"\x84") == [
        Call(number="8005551212", name="JOHN DOE", date="0324", time="0902")
    ]


def test_mdmf_absence_reasons() -> None:
    body = b"\x04\x01O\x08\x01P"
    packet = bytes([0x80, len(body)]) + body
    packet += bytes([-sum(packet) & 0xFF])
    assert decode_fsk(packet) == [Call(reason=AbsenceReason.UNAVAILABLE)]
    assert encode_mdmf(Call(reason=AbsenceReason.PRIVATE)) == bytes.fromhex(
        "80 06 04 01 50 08 01 50"
    ) + bytes([-(0x80 + 6 + 4 + 1 + 0x50 + 8 + 1 + 0x50) & 0xFF])


@pytest.mark.parametrize(("active", "mdmf"), [(True, False), (False, False), (True, True)])
def test_message_waiting_is_reported_as_such(active: bool, mdmf: bool) -> None:
    packet = encode_message_waiting(active, mdmf=mdmf)
    assert packet[0] == (0x82 if mdmf else 0x06)
    assert decode_fsk(packet) == [MessageWaiting(active=active)]


def test_checksum_is_all_bytes_sum_to_zero() -> None:
    packet = bytearray(encode_sdmf(Call(number="1", date="0101", time="0101")))
    assert sum(packet) & 0xFF == 0
    packet[-1] ^= 1
    decoder = FskDecoder()
    decoder.feed(bytes(packet) + encode_message_waiting(False))
    with pytest.raises(CallerIdError, match="checksum"):
        decoder.next_item()
    assert decoder.next_item() == MessageWaiting(active=False)


def test_seizure_bytes_are_skipped_and_unknown_types_raise() -> None:
    packet = encode_mdmf(Call(number="42"))
    decoder = FskDecoder()
    decoder.feed(b"\x55" * 30 + b"\x13" + packet)
    with pytest.raises(CallerIdError, match="unknown message type 0x13"):
        decoder.next_item()
    assert decoder.next_item() == Call(number="42")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x02\x09123", "runs past"),
        (b"\x02", "cut short"),
        (b"\x01\x0509301", "MMDDHHMM"),
        (b"\x04\x01X", "neither O nor P"),
    ],
)
def test_bad_mdmf_parameters(body: bytes, reason: str) -> None:
    packet = bytes([0x80, len(body)]) + body
    packet += bytes([-sum(packet) & 0xFF])
    with pytest.raises(CallerIdError, match=reason):
        decode_fsk(packet)


def test_truncated_packet_at_end_of_input() -> None:
    with pytest.raises(CallerIdError, match="cut short at end of input"):
        decode_fsk(encode_mdmf(Call(number="42"))[:-1])


def test_fsk_byte_at_a_time() -> None:
    data = encode_sdmf(Call(number="1", date="0101", time="0101")) + encode_mdmf(Call(name="A"))
    decoder = FskDecoder()
    got = []
    for byte in data:
        decoder.feed(bytes([byte]))
        while (item := decoder.next_item()) is not None:
            got.append(item)
    assert got == decode_fsk(data) and len(got) == 2


@settings(max_examples=500, deadline=None)
@given(call=calls)
def test_fsk_round_trips(call: Call) -> None:
    assert decode_fsk(encode_mdmf(call)) == [call]
    sdmf = decode_fsk(encode_sdmf(call))[0]
    assert isinstance(sdmf, Call)
    assert (sdmf.number, sdmf.date, sdmf.time, sdmf.reason) == (
        call.number,
        call.date,
        call.time,
        call.reason,
    )


# ---- fuzzers ---------------------------------------------------------------------------

modem_noise = st.lists(
    st.one_of(
        st.sampled_from(
            [b"RING", b"DATE", b"TIME", b"NMBR", b"NAME", b"MESG", b"DDN_NMBR", b"=", b" = "]
        ),
        st.sampled_from([b"\r", b"\n", b"\r\n", b"OK", b"P", b"O", b"RING A"]),
        st.from_regex(rb"[0-9]{0,9}", fullmatch=True),
        st.binary(max_size=8),
    ),
    max_size=40,
).map(b"".join)


def drain_all(decoder: ModemDecoder | FskDecoder) -> None:
    while True:
        try:
            item = decoder.next_item()
        except CallerIdError:
            continue
        except ProtocolError as exc:  # pragma: no cover - the assertion
            pytest.fail(f"foreign ProtocolError {exc!r}")
        if item is None:
            return


@settings(max_examples=5000, deadline=None)
@given(data=modem_noise, wait=st.booleans())
def test_fuzz_modem_only_callerid_error_escapes(data: bytes, wait: bool) -> None:
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        decoder = ModemDecoder(wait_for_name=wait, max_line=48)
        for number, chunk in enumerate([*chunks, b""]):
            decoder.feed(chunk, float(number))
            drain_all(decoder)


fsk_noise = st.lists(
    st.one_of(
        st.binary(max_size=10),
        st.sampled_from([b"\x04", b"\x80", b"\x06", b"\x82", b"\x55"]),
        calls.map(encode_mdmf),
        calls.map(encode_sdmf),
        st.builds(
            lambda kind, body: (
                bytes([kind, len(body)]) + body + bytes([-(kind + len(body) + sum(body)) & 0xFF])
            ),
            st.sampled_from([0x04, 0x80, 0x06, 0x82]),
            st.binary(max_size=20),
        ),
    ),
    max_size=10,
).map(b"".join)


@settings(max_examples=5000, deadline=None)
@given(data=fsk_noise)
def test_fuzz_fsk_only_callerid_error_escapes(data: bytes) -> None:
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        decoder = FskDecoder()
        for chunk in [*chunks, b""]:
            decoder.feed(chunk)
            drain_all(decoder)

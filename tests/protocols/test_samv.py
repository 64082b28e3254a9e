"""SAM_V ID-card frames: the command table, YinanSoft responses, text block, resync, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.protocols.errors import ProtocolError
from gatewayd.protocols.samv import (
    FIND_CARD,
    PREAMBLE,
    READ_APPENDED_ADDRESS,
    READ_CARD,
    READ_CARD_WITH_FINGERPRINT,
    READ_SAM_ID,
    RESET_SAM,
    SAM_STATUS,
    SELECT_CARD,
    CardNotFoundError,
    CardReadError,
    CardSelectError,
    IdCard,
    Request,
    RequestDecoder,
    Response,
    ResponseDecoder,
    SamAuthError,
    SamCommandError,
    SamFaultError,
    SamvError,
    SamvFrameError,
    SamvStatusError,
    Sex,
    decode_read,
    decode_responses,
    decode_sam_id,
    decode_text_block,
    encode_text_block,
    find_fail_response,
    find_ok_response,
    is_read_response,
    read_fail_response,
    read_ok_response,
    select_fail_response,
    select_ok_response,
    set_baud_request,
    set_max_rf_bytes_request,
    status_error,
    xor_checksum,
)
from gatewayd.protocols.samv_tables import NATIONS

CARD = IdCard(
    name="张三",
    sex=Sex.MALE,
    nation="汉",
    birth_date="1949-12-31",
    address="北京市东城区景山前街4号",
    id_number="11010519491231002X",
    authority="北京市公安局东城分局",
    valid_from="2015-06-01",
    valid_to="2035-06-01",
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (RESET_SAM, "AA AA AA 96 69 00 03 10 FF EC"),
        (SAM_STATUS, "AA AA AA 96 69 00 03 11 FF ED"),
        (READ_SAM_ID, "AA AA AA 96 69 00 03 12 FF EE"),
        (FIND_CARD, "AA AA AA 96 69 00 03 20 01 22"),
        (SELECT_CARD, "AA AA AA 96 69 00 03 20 02 21"),
        (READ_CARD, "AA AA AA 96 69 00 03 30 01 32"),
        (READ_APPENDED_ADDRESS, "AA AA AA 96 69 00 03 30 03 30"),
        (READ_CARD_WITH_FINGERPRINT, "AA AA AA 96 69 00 03 30 10 23"),
    ],
)
def test_command_table(frame: bytes, expected: str) -> None:
    assert frame == h(expected)


@pytest.mark.parametrize(
    ("baud", "para"), [(115200, 0), (57600, 1), (38400, 2), (19200, 3), (9600, 4)]
)
def test_set_baud_uses_para_00_to_04(baud: int, para: int) -> None:
    frame = set_baud_request(baud)
    assert frame[:9] == h(f"AA AA AA 96 69 00 03 60 {para:02X}")
    assert xor_checksum(frame[5:]) == 0


def test_set_baud_and_rf_bytes_reject_bad_values() -> None:
    with pytest.raises(SamvError):
        set_baud_request(4800)
    frame = set_max_rf_bytes_request(0x50)
    assert frame[:10] == h("AA AA AA 96 69 00 04 61 FF 50") and xor_checksum(frame[5:]) == 0
    with pytest.raises(SamvError):
        set_max_rf_bytes_request(256)


def test_yinansoft_responses_encode_byte_for_byte() -> None:
    assert find_ok_response() == h("AAAAAA9669 0008 00 00 9F 00000000 97")
    assert find_fail_response() == h("AAAAAA9669 0004 00 00 80 84")
    assert select_ok_response() == h("AAAAAA9669 000C 00 00 90 0000000000000000 9C")
    assert select_fail_response() == h("AAAAAA9669 0004 00 00 81 85")
    assert read_fail_response() == h("AAAAAA9669 0004 00 00 41 45")


def test_yinansoft_responses_decode() -> None:
    frames = h(
        "AAAAAA9669 0008 00 00 9F 00000000 97"
        "AAAAAA9669 0004 00 00 80 84"
        "AAAAAA9669 000C 00 00 90 0000000000000000 9C"
        "AAAAAA9669 0004 00 00 81 85"
        "AAAAAA9669 0004 00 00 41 45"
    )
    responses = decode_responses(frames)
    assert [r.status for r in responses] == ["9F", "80", "90", "81", "41"]
    assert [r.ok for r in responses] == [True, False, True, False, False]
    assert responses[0].data == bytes(4) and responses[2].data == bytes(8)
    for response, error in zip(responses[1::2], (CardNotFoundError, CardSelectError), strict=False):
        with pytest.raises(error):
            response.raise_for_status()
    with pytest.raises(CardReadError, match="status 41: read failed"):
        decode_read(responses[4])


def test_read_ok_frame_layout() -> None:
    frame = read_ok_response(CARD)
    assert frame[:14] == h("AA AA AA 96 69 05 08 00 00 90 01 00 04 00")
    assert len(frame) == 1295
    (response,) = decode_responses(frame)
    assert is_read_response(response)
    read = decode_read(response)
    assert read.card == CARD
    assert read.photo == bytes(1024) and read.fingerprint is None


def test_read_with_fingerprint_has_three_lengths() -> None:
    fingerprint = bytes(range(256)) * 4
    frame = read_ok_response(CARD, photo=b"\x01" * 1024, fingerprint=fingerprint)
    assert frame[5:7] == h("09 0A")
    read = decode_read(decode_responses(frame)[0])
    assert read.card == CARD and read.photo == b"\x01" * 1024 and read.fingerprint == fingerprint


def test_text_block_layout_and_padding() -> None:
    block = encode_text_block(CARD)
    assert len(block) == 256
    assert block[0:4] == "张三".encode("utf-16-le")
    assert block[4:30] == b" \x00" * 13
    assert block[30:32] == b"1\x00" and block[32:36] == "01".encode("utf-16-le")
    assert block[36:52] == "19491231".encode("utf-16-le")
    assert block[122:158] == "11010519491231002X".encode("utf-16-le")
    assert block[204:220] == "20350601".encode("utf-16-le")
    assert decode_text_block(block) == CARD


def test_long_term_validity_and_nation_46() -> None:
    card = IdCard(
        name="岩温",
        sex=Sex.FEMALE,
        nation="德昂",
        birth_date="1880-01-01",
        address="云南省德宏州芒市",
        id_number="440524188001010014",
        authority="芒市公安局",
        valid_from="2020-01-01",
        valid_to="long-term",
    )
    block = encode_text_block(card)
    assert block[32:36] == "46".encode("utf-16-le")
    assert block[204:208] == "长期".encode("utf-16-le")
    decoded = decode_text_block(block)
    assert decoded.nation == "德昂" and decoded.valid_to == "long-term"
    assert decoded.nation_code == "46"


def test_nation_table_is_complete() -> None:
    assert len(NATIONS) == 58
    assert [NATIONS[f"{n:02d}"] for n in (1, 2, 5, 29, 43, 46, 56)] == [
        "汉",
        "蒙古",
        "维吾尔",
        "柯尔克孜",
        "乌孜别克",
        "德昂",
        "基诺",
    ]
    assert NATIONS["97"] == "其他" and NATIONS["98"] == "外国血统"


def patched(offset: int, text: str) -> bytes:
    block = bytearray(encode_text_block(CARD))
    raw = text.encode("utf-16-le")
    block[offset : offset + len(raw)] = raw
    return bytes(block)


@pytest.mark.parametrize(
    ("offset", "text", "reason"),
    [
        (122, "110105194912310020", "GB 11643"),
        (30, "3", "sex code"),
        (32, "57", "nation code"),
        (36, "19491331", "real date"),
        (188, "2015AB01", "YYYYMMDD"),
        (204, "永久", "YYYYMMDD"),
    ],
)
def test_bad_text_blocks_raise(offset: int, text: str, reason: str) -> None:
    with pytest.raises(SamvError, match=reason):
        decode_text_block(patched(offset, text))


def test_sex_codes() -> None:
    assert decode_text_block(patched(30, "2")).sex is Sex.FEMALE
    assert decode_text_block(patched(30, "9")).sex is Sex.UNKNOWN
    assert decode_text_block(patched(30, "0")).sex is Sex.UNKNOWN


def test_lone_surrogate_is_not_ucs2() -> None:
    block = bytearray(encode_text_block(CARD))
    block[0:2] = b"\x00\xd8"
    with pytest.raises(SamvError, match="UCS-2"):
        decode_text_block(bytes(block))


def test_id_card_value_validates_itself() -> None:
    fields = {
        "name": "张三",
        "sex": Sex.MALE,
        "nation": "汉",
        "birth_date": "1949-12-31",
        "address": "北京",
        "id_number": "11010519491231002X",
        "authority": "北京",
        "valid_from": "2015-06-01",
        "valid_to": "long-term",
    }
    IdCard(**fields)
    for key, value in [
        ("id_number", "11010519491231002Y"),
        ("nation", "汉族"),
        ("birth_date", "19491231"),
        ("valid_to", "forever"),
        ("name", "名" * 16),
        ("address", "😀"),
    ]:
        with pytest.raises(SamvError):
            IdCard(**{**fields, key: value})


def test_decoder_resynchronises_after_garbage() -> None:
    decoder = ResponseDecoder()
    decoder.feed(b"\x00\xaa\xaa\x96garbage\xaa" + find_ok_response())
    assert decoder.next_item() == Response(sw3=0x9F, data=bytes(4))
    decoder.feed(b"\xaa" + find_fail_response())
    assert decoder.next_item() == Response(sw3=0x80)
    assert decoder.next_item() is None


def test_bad_checksum_raises_then_decoding_goes_on() -> None:
    broken = bytearray(select_ok_response())
    broken[-1] ^= 0xFF
    decoder = ResponseDecoder()
    decoder.feed(bytes(broken) + find_ok_response())
    with pytest.raises(SamvFrameError, match="checksum"):
        decoder.next_item()
    assert decoder.next_item() == Response(sw3=0x9F, data=bytes(4))


def test_fake_preamble_in_noise_does_not_swallow_real_frames() -> None:
    decoder = ResponseDecoder()
    decoder.feed(PREAMBLE + b"\x00\x30" + find_ok_response() + select_fail_response() + bytes(40))
    with pytest.raises(SamvFrameError, match="checksum"):
        decoder.next_item()
    assert decoder.next_item() == Response(sw3=0x9F, data=bytes(4))
    assert decoder.next_item() == Response(sw3=0x81)


def test_bad_length_raises_then_decoding_goes_on() -> None:
    decoder = ResponseDecoder(max_length=100)
    decoder.feed(PREAMBLE + b"\x00\x01\x00" + PREAMBLE + b"\xff\xff" + find_fail_response())
    with pytest.raises(SamvFrameError, match="bad length 1"):
        decoder.next_item()
    with pytest.raises(SamvFrameError, match="bad length 65535"):
        decoder.next_item()
    assert decoder.next_item() == Response(sw3=0x80)


def test_truncated_frame_at_end_of_input() -> None:
    decoder = ResponseDecoder()
    decoder.feed(find_ok_response()[:-3])
    assert decoder.next_item() is None
    decoder.feed(b"")
    with pytest.raises(SamvFrameError, match="truncated"):
        decoder.next_item()
    assert decoder.next_item() is None


def test_garbage_does_not_grow_the_buffer() -> None:
    decoder = ResponseDecoder()
    for _ in range(100):
        decoder.feed(bytes(range(256)) * 40)
        assert decoder.next_item() is None
        assert len(decoder._buf) < len(PREAMBLE)
    decoder.feed(find_ok_response())
    assert decoder.next_item() is not None


def test_byte_at_a_time_matches_whole() -> None:
    data = b"\x13" + find_ok_response() + select_ok_response(b"12345678") + read_ok_response(CARD)
    decoder = ResponseDecoder()
    seen = []
    for byte in data:
        decoder.feed(bytes([byte]))
        while (item := decoder.next_item()) is not None:
            seen.append(item)
    assert seen == decode_responses(data)
    assert [r.status for r in seen] == ["9F", "90", "90"]
    assert not is_read_response(seen[1]) and is_read_response(seen[2])


def test_request_decoder_reads_the_commands() -> None:
    decoder = RequestDecoder()
    decoder.feed(FIND_CARD + SELECT_CARD + READ_CARD + set_max_rf_bytes_request(80))
    requests = [decoder.next_item() for _ in range(4)]
    assert requests == [
        Request(cmd=0x20, para=0x01),
        Request(cmd=0x20, para=0x02),
        Request(cmd=0x30, para=0x01),
        Request(cmd=0x61, para=0xFF, data=b"\x50"),
    ]


@pytest.mark.parametrize(
    ("sw3", "kind"),
    [
        (0x80, CardNotFoundError),
        (0x81, CardSelectError),
        (0x41, CardReadError),
        (0x40, CardReadError),
        (0x31, SamAuthError),
        (0x33, SamAuthError),
        (0x60, SamFaultError),
        (0x66, SamFaultError),
        (0x10, SamCommandError),
        (0x21, SamCommandError),
        (0x77, SamvStatusError),
    ],
)
def test_status_errors_are_named(sw3: int, kind: type[SamvStatusError]) -> None:
    error = status_error(sw3)
    assert type(error) is kind and error.sw3 == sw3
    assert isinstance(error, SamvError) and f"{sw3:02X}" in str(error)


def test_no_content_is_not_a_failure() -> None:
    Response(sw3=0x91).raise_for_status()


def test_sam_id_format() -> None:
    data = (5).to_bytes(2, "little") + (1).to_bytes(2, "little")
    data += (20120101).to_bytes(4, "little") + (123).to_bytes(4, "little")
    data += (4294967295).to_bytes(4, "little")
    assert decode_sam_id(data) == "05.01-20120101-0000000123-4294967295"
    with pytest.raises(SamvError):
        decode_sam_id(data[:15])


def test_read_response_with_inconsistent_lengths() -> None:
    with pytest.raises(SamvError, match="do not add up"):
        decode_read(Response(sw3=0x90, data=h("0100 0400") + bytes(10)))
    with pytest.raises(SamvError, match="expected 256"):
        decode_read(Response(sw3=0x90, data=h("0002 0000") + bytes(2)))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_xor_checksum_matches_naive_fold(data: bytes) -> None:
    expected = 0
    for byte in data:
        expected ^= byte
    assert xor_checksum(data) == expected


frame_noise = st.lists(
    st.one_of(
        st.binary(max_size=12),
        st.just(PREAMBLE),
        st.sampled_from([find_ok_response(), select_fail_response(), FIND_CARD]),
        st.builds(lambda n: n.to_bytes(2, "big"), st.integers(0, 40)),
    ),
    max_size=12,
).map(b"".join)


def drain(decoder: ResponseDecoder | RequestDecoder) -> None:
    while True:
        try:
            item = decoder.next_item()
        except SamvError:
            continue
        except ProtocolError as exc:  # pragma: no cover - the assertion
            pytest.fail(f"foreign ProtocolError {exc!r}")
        if item is None:
            return
        if isinstance(item, Response) and item.ok and len(item.data) >= 4:
            with contextlib.suppress(SamvError):
                decode_read(item)


@settings(max_examples=5000, deadline=None)
@given(data=frame_noise)
def test_fuzz_only_samv_error_escapes(data: bytes) -> None:
    for make in (ResponseDecoder, RequestDecoder):
        for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
            decoder = make(max_length=64)
            for chunk in [*chunks, b""]:
                decoder.feed(chunk)
                drain(decoder)


@settings(max_examples=5000, deadline=None)
@given(
    block=st.one_of(
        st.binary(min_size=256, max_size=256),
        st.builds(
            lambda offset, raw: patched(offset, raw),
            st.sampled_from([0, 30, 32, 36, 122, 188, 204]),
            st.text(max_size=9),
        ),
    )
)
def test_fuzz_text_block_only_raises_samv_error(block: bytes) -> None:
    try:
        card = decode_text_block(block[:256])
    except SamvError:
        return
    assert decode_text_block(encode_text_block(card)) == card

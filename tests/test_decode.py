"""``gatewayd decode`` engine: JSON shape per protocol, hex input, and how bad input ends a run."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from gatewayd.decode import PROTOCOLS, run_decode
from gatewayd.protocols.callerid import AbsenceReason, Call, encode_mdmf, encode_sdmf
from gatewayd.protocols.samv import (
    IdCard,
    Sex,
    find_fail_response,
    find_ok_response,
    read_ok_response,
    select_ok_response,
)

CARD = IdCard(
    name="张三",
    sex=Sex.MALE,
    nation="德昂",
    birth_date="1949-12-31",
    address="北京市东城区",
    id_number="11010519491231002X",
    authority="北京市公安局",
    valid_from="2015-06-01",
    valid_to="long-term",
)
SWIPE = (
    b"%B5350290149345177^FATEHI/SUALEH^1604201000000?;5350290149345177=16042010000056700100?\r\n"
)


def decode(
    protocol: str, data: bytes | str, hex_input: bool = False
) -> tuple[int, list[dict[str, Any]], list[str]]:
    stream: Any = io.StringIO(data) if isinstance(data, str) else io.BytesIO(data)
    out, err = io.StringIO(), io.StringIO()
    code = run_decode(protocol, stream, hex_input, out, err)
    items = [json.loads(line) for line in out.getvalue().splitlines()]
    return code, items, err.getvalue().splitlines()


def test_protocol_list() -> None:
    assert PROTOCOLS == ("msr", "idcard", "callerid", "callerid-fsk", "callerid-dtmf")


def test_msr_shape() -> None:
    code, items, errors = decode("msr", SWIPE + b"%E?;42?+9999?\r\n")
    assert (code, errors) == (0, [])
    assert items == [
        {
            "track1": {
                "pan": "5350290149345177",
                "name": "FATEHI/SUALEH",
                "expiry": "1604",
                "service_code": "201",
            },
            "track2": {
                "pan": "5350290149345177",
                "expiry": "1604",
                "service_code": "201",
                "discretionary": "0000056700100",
            },
            "track3": None,
            "errors": [],
        },
        {
            "track1": None,
            "track2": {"pan": "42", "expiry": None, "service_code": None, "discretionary": ""},
            "track3": "9999",
            "errors": [1],
        },
    ]


def test_msr_swipe_without_readable_track_fails_after_earlier_items() -> None:
    code, items, errors = decode("msr", SWIPE + b"%E?;E?\r\n" + SWIPE)
    assert code == 1 and len(items) == 1
    assert errors == ["error: swipe has no readable track (tracks [1, 2] read as E)"]


def test_idcard_shape_from_hex() -> None:
    frames = find_ok_response() + select_ok_response() + read_ok_response(CARD)
    text = frames.hex(" ", 1).upper().replace(" AA", "\n AA")
    code, items, errors = decode("idcard", text.encode(), hex_input=True)
    assert (code, errors) == (0, [])
    assert items == [
        {"status": "9F"},
        {"status": "90"},
        {
            "status": "90",
            "name": "张三",
            "sex": "male",
            "nation": "德昂",
            "birth_date": "1949-12-31",
            "address": "北京市东城区",
            "id_number": "11010519491231002X",
            "authority": "北京市公安局",
            "valid_from": "2015-06-01",
            "valid_to": "long-term",
        },
    ]


def test_idcard_output_is_not_ascii_escaped() -> None:
    out, err = io.StringIO(), io.StringIO()
    run_decode("idcard", io.BytesIO(read_ok_response(CARD)), False, out, err)
    assert "德昂" in out.getvalue() and "\\u" not in out.getvalue()


def test_idcard_error_status_stops_the_run() -> None:
    code, items, errors = decode("idcard", find_ok_response() + find_fail_response())
    assert code == 1 and items == [{"status": "9F"}]
    assert errors == ["error: status 80: find failed (no card)"]


def test_idcard_bad_checksum_and_bad_length() -> None:
    broken = bytearray(select_ok_response())
    broken[-1] ^= 1
    code, items, errors = decode("idcard", find_ok_response() + bytes(broken))
    assert code == 1 and items == [{"status": "9F"}]
    assert len(errors) == 1 and errors[0].startswith("error: checksum mismatch")
    code, items, errors = decode("idcard", bytes.fromhex("AAAAAA9669 0001 00"))
    assert code == 1 and items == []
    assert len(errors) == 1 and errors[0].startswith("error: bad length 1")


def test_idcard_truncated_frame() -> None:
    code, items, errors = decode("idcard", find_ok_response() + find_ok_response()[:9])
    assert code == 1 and items == [{"status": "9F"}]
    assert errors == ["error: truncated frame at end of input (9 bytes)"]


MODEM = (
    b"RING\r\n\r\nDATE = 0330\r\nTIME = 1234\r\nNMBR = 13800138000\r\nNAME = ZHANG SAN\r\n"
    b"\r\nRING\r\n\r\nRING\r\nOK\r\n"
    b"DATE=0331\r\nTIME=0905\r\nNMBR=P\r\n\r\nRING\r\n"
)


def test_callerid_modem_shape_and_rings() -> None:
    code, items, errors = decode("callerid", MODEM)
    assert (code, errors) == (0, [])
    assert items == [
        {
            "number": "13800138000",
            "name": "ZHANG SAN",
            "date": "0330",
            "time": "1234",
            "reason": None,
            "rings": 3,
        },
        {
            "number": None,
            "name": None,
            "date": "0331",
            "time": "0905",
            "reason": "private",
            "rings": 1,
        },
    ]


def test_callerid_modem_bad_field_keeps_earlier_call() -> None:
    first_call = MODEM.split(b"OK")[0]
    code, items, errors = decode("callerid", first_call + b"DATE = 1340\r\nNMBR = 1\r\n")
    assert code == 1
    assert [item["number"] for item in items] == ["13800138000"]
    assert errors == ["error: date '1340' is not a calendar day"]


def test_callerid_fsk_shape() -> None:
    data = encode_mdmf(Call(number="13800138000", name="ZHANG", date="0330", time="1234"))
    data += encode_sdmf(Call(date="0401", time="0000", reason=AbsenceReason.UNAVAILABLE))
    data += bytes.fromhex("06 03 42 42 42 31")
    code, items, errors = decode("callerid-fsk", data.hex(), hex_input=True)
    assert (code, errors) == (0, [])
    assert items == [
        {"number": "13800138000", "name": "ZHANG", "date": "0330", "time": "1234", "reason": None},
        {"number": None, "name": None, "date": "0401", "time": "0000", "reason": "unavailable"},
        {"message_waiting": True, "date": None, "time": None},
    ]


def test_callerid_fsk_bad_checksum() -> None:
    good = encode_sdmf(Call(number="1", date="0101", time="0101"))
    code, items, errors = decode("callerid-fsk", good + good[:-1] + b"\x00" + good)
    assert code == 1 and len(items) == 1
    assert errors == ["error: checksum mismatch in message type 0x04"]


def test_callerid_fsk_bad_length() -> None:
    code, items, errors = decode("callerid-fsk", bytes.fromhex("80 05 02 09 31 32 33 DA"))
    assert code == 1 and items == []
    assert errors == ["error: MDMF parameter 0x02 runs past the message"]


def test_callerid_dtmf_shape() -> None:
    code, items, errors = decode("callerid-dtmf", "A13800138000C\nD1#\nB00\n")
    assert (code, errors) == (0, [])
    assert items == [
        {"number": "13800138000", "name": None, "date": None, "time": None, "reason": None},
        {"number": None, "name": None, "date": None, "time": None, "reason": "private"},
        {"number": None, "name": None, "date": None, "time": None, "reason": "unavailable"},
    ]


def test_callerid_dtmf_malformed() -> None:
    code, items, errors = decode("callerid-dtmf", b"A123C D9# A456C")
    assert code == 1 and [item["number"] for item in items] == ["123"]
    assert len(errors) == 1 and "D1#/D2#/D3#" in errors[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [("41 4", "odd number of hex digits"), ("41 zz", "'z', which is not a hex digit")],
)
def test_bad_hex_input(text: str, reason: str) -> None:
    code, items, errors = decode("callerid-dtmf", text, hex_input=True)
    assert code == 1 and items == []
    assert len(errors) == 1 and reason in errors[0]


def test_hex_pairs_split_across_reads() -> None:
    class Trickle(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            return super().read(1)

    data = find_ok_response().hex(" ").encode()
    out, err = io.StringIO(), io.StringIO()
    assert run_decode("idcard", Trickle(data), True, out, err) == 0
    assert json.loads(out.getvalue()) == {"status": "9F"}


def test_large_capture_streams_in_chunks() -> None:
    data = (find_ok_response() + select_ok_response()) * 20000
    code, items, errors = decode("idcard", data)
    assert code == 0 and len(items) == 40000 and errors == []


def test_unknown_protocol_is_a_usage_error() -> None:
    code, items, errors = decode("token", b"123")
    assert code == 2 and items == []
    assert len(errors) == 1 and errors[0].startswith("error: unknown protocol 'token'")


def test_cli_decode_runs_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gatewayd.cli import main

    capture = tmp_path / "swipes.txt"
    capture.write_bytes(SWIPE + b"%E?\r\n")
    assert main(["decode", "msr", str(capture)]) == 1
    out, err = capsys.readouterr()
    assert [json.loads(line)["track3"] for line in out.splitlines()] == [None]
    assert err.splitlines() == ["error: swipe has no readable track (tracks [1] read as E)"]

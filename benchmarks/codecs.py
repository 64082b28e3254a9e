"""Throughput of each sans-I/O codec: items decoded per second, on one core. Prints JSON.

Each codec decodes pre-encoded batches through its incremental decoder (the path drivers
use) until it has done ``--max-items`` items or spent ``--budget`` seconds, so the whole run
stays within a few seconds however fast or slow the machine is.

    .venv/bin/python benchmarks/codecs.py [--budget 0.5] [--max-items 100000]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewayd.protocols.callerid import Call, FskDecoder, ModemDecoder, encode_mdmf
from gatewayd.protocols.callerid_dtmf import DleDecoder, DtmfDecoder, encode_dle_digits
from gatewayd.protocols.keymap import KeyDecoder, text_to_events
from gatewayd.protocols.msr import SwipeDecoder
from gatewayd.protocols.samv import (
    IdCard,
    ResponseDecoder,
    Sex,
    decode_read,
    find_ok_response,
    read_ok_response,
    select_ok_response,
)

BATCH = 2000
SWIPE = (
    b"%B5350290149345177^FATEHI/SUALEH^1604201000000000?;5350290149345177=16042010000056700100?\r\n"
)
CARD = IdCard(
    name="张三",
    sex=Sex.MALE,
    nation="汉",
    birth_date="1949-12-31",
    address="北京市东城区景山前街4号",
    id_number="11010519491231002X",
    authority="北京市公安局东城分局",
    valid_from="2015-06-01",
    valid_to="long-term",
)
CALL = Call(number="13800138000", name="ZHANG SAN", date="0330", time="1234")
MODEM_BLOCK = b"DATE = 0330\r\nTIME = 1234\r\nNMBR = 13800138000\r\nRING\r\n"

# Each runner decodes one batch and returns how many items came out.
Runner = Callable[[], int]


def msr() -> int:
    decoder = SwipeDecoder()
    decoder.feed(SWIPE * BATCH)
    count = 0
    while decoder.next_item() is not None:
        count += 1
    return count


def _frames(data: bytes, read: bool) -> Runner:
    def run() -> int:
        decoder = ResponseDecoder()
        decoder.feed(data)
        count = 0
        while (response := decoder.next_item()) is not None:
            if read:
                decode_read(response)
            count += 1
        return count

    return run


def _drain(decoder: ModemDecoder | FskDecoder | DtmfDecoder | DleDecoder) -> int:
    count = 0
    while decoder.next_item() is not None:
        count += 1
    return count


def modem() -> int:
    decoder = ModemDecoder()
    decoder.feed(MODEM_BLOCK * BATCH)
    return _drain(decoder)


FSK = encode_mdmf(CALL) * BATCH


def fsk() -> int:
    decoder = FskDecoder()
    decoder.feed(FSK)
    return _drain(decoder)


def dtmf() -> int:
    decoder = DtmfDecoder()
    decoder.feed("A13800138000C" * BATCH)
    return _drain(decoder)


DLE_STREAM = (b"\x7f" * 40 + encode_dle_digits("1")) * BATCH


def dle() -> int:
    decoder = DleDecoder()
    decoder.feed(DLE_STREAM)
    return _drain(decoder)


SCAN_EVENTS = [(e.code, e.value, e.timestamp) for e in text_to_events("6901234567892", "fr")]


def keymap() -> int:
    decoder = KeyDecoder("fr")
    count = 0
    for _ in range(BATCH // 10):
        for code, value, timestamp in SCAN_EVENTS:
            if decoder.feed(code, value, timestamp) is not None:
                count += 1
    return count


CODECS: dict[str, tuple[str, Runner]] = {
    "msr": ("swipes", msr),
    "samv_short_frames": (
        "frames",
        _frames((find_ok_response() + select_ok_response()) * BATCH, False),
    ),
    "samv_card_reads": ("reads", _frames(read_ok_response(CARD) * (BATCH // 10), True)),
    "callerid_modem": ("calls+rings", modem),
    "callerid_fsk": ("packets", fsk),
    "callerid_dtmf": ("calls", dtmf),
    "dle_digits": ("digits", dle),
    "keymap": ("scans of 13 chars", keymap),
}


def measure(runner: Runner, budget: float, max_items: int) -> dict[str, float | int]:
    runner()  # warm-up: regex caches, first allocations
    items, spent = 0, 0.0
    while items < max_items and spent < budget:
        start = time.perf_counter()
        items += runner()
        spent += time.perf_counter() - start
    return {"items": items, "seconds": round(spent, 4), "items_per_s": round(items / spent)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.5, help="seconds per codec")
    parser.add_argument("--max-items", type=int, default=100_000, help="items per codec")
    args = parser.parse_args()
    results = {}
    for name, (unit, runner) in CODECS.items():
        results[name] = {"unit": unit, **measure(runner, args.budget, args.max_items)}
    report = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "codecs": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

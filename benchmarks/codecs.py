"""Throughput of each sans-I/O codec: items decoded per second, on one core. Prints JSON.

Each codec decodes pre-encoded batches through its incremental decoder (the path drivers
use) until it has done ``--max-items`` items or spent ``--budget`` seconds, so the whole run
stays within a few seconds however fast or slow the machine is.

The ``samv_pty`` part runs the real ``samv_reader`` driver against the ID-card reader
simulator on a pseudo-terminal, the simulator pacing its bytes at 115200 baud: find, select
and read, ``--pty-cycles`` times. The physical floor is the wire time of what the line must
carry (the 1 295-byte read answer alone is 112.4 ms at 115200 8N1; the cycle counts the three
answers, since a pty carries the host's requests instantly); the ratio says how much the
driver, the pty and the scheduler add on top.

    .venv/bin/python benchmarks/codecs.py [--budget 0.5] [--max-items 100000] [--pty-cycles 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import statistics
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
    ResponseDecoder,
    decode_read,
    find_ok_response,
    read_ok_response,
    select_ok_response,
)
from gatewayd.simulators import DEMO_CARD

BATCH = 2000
SWIPE = (
    b"%B5350290149345177^FATEHI/SUALEH^1604201000000000?;5350290149345177=16042010000056700100?\r\n"
)
CARD = DEMO_CARD  # the simulator's card: a long-term card, all fields set
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


async def samv_pty(cycles: int, baud: int = 115200) -> dict[str, float | int]:
    """Find → select → read cycles of the real driver against the paced reader simulator."""
    import structlog

    from gatewayd.drivers import DeviceSpec
    from gatewayd.plugins.samv_reader import (
        READ_FRAME_BYTES,
        SHORT_FRAME_BYTES,
        SamvOptions,
        SamvReader,
        wire_seconds,
    )
    from gatewayd.protocols.samv import FIND_CARD, READ_CARD, SELECT_CARD
    from gatewayd.simulators import IdCardReaderSim

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sim = IdCardReaderSim(CARD, baud=baud, pace=True, hides_read_card=False).start()
    sim.place()
    options = SamvOptions(port=sim.path, baudrate=baud, probe=False)  # type: ignore[arg-type]
    reader = SamvReader(
        DeviceSpec(id="bench", terminal="t", driver="samv_reader", profile=None, options=options)
    )
    cycle_times, read_times = [], []
    try:
        await reader._open()
        for _ in range(cycles):
            start = time.perf_counter()
            found = await reader._exchange(FIND_CARD, SHORT_FRAME_BYTES)
            selected = await reader._exchange(SELECT_CARD, SHORT_FRAME_BYTES)
            read_start = time.perf_counter()
            answer = await reader._exchange(READ_CARD, READ_FRAME_BYTES)
            assert found and selected and answer, "the simulator did not answer"
            decode_read(answer)
            end = time.perf_counter()
            cycle_times.append(end - start)
            read_times.append(end - read_start)
    finally:
        await reader._close()
        sim.stop()
    # The answers of one cycle, which the simulator paces. A pty carries the host's three
    # 10-byte requests instantly; on a real line they would add 2.6 ms to the floor.
    cycle_bytes = len(find_ok_response()) + len(select_ok_response()) + len(read_ok_response(CARD))
    assert len(FIND_CARD) == 10
    read_floor = wire_seconds(len(read_ok_response(CARD)), baud)
    cycle_floor = wire_seconds(cycle_bytes, baud)
    read_median, cycle_median = statistics.median(read_times), statistics.median(cycle_times)
    return {
        "baud": baud,
        "cycles": cycles,
        "read_frame_bytes": len(read_ok_response(CARD)),
        "read_wire_floor_ms": round(read_floor * 1000, 2),
        "read_median_ms": round(read_median * 1000, 2),
        "read_ratio": round(read_median / read_floor, 3),
        "cycle_bytes": cycle_bytes,
        "cycle_wire_floor_ms": round(cycle_floor * 1000, 2),
        "cycle_median_ms": round(cycle_median * 1000, 2),
        "cycle_max_ms": round(max(cycle_times) * 1000, 2),
        "cycle_ratio": round(cycle_median / cycle_floor, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.5, help="seconds per codec")
    parser.add_argument("--max-items", type=int, default=100_000, help="items per codec")
    parser.add_argument("--pty-cycles", type=int, default=10, help="ID-card cycles (0: skip)")
    args = parser.parse_args()
    results = {}
    for name, (unit, runner) in CODECS.items():
        results[name] = {"unit": unit, **measure(runner, args.budget, args.max_items)}
    report: dict[str, object] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "codecs": results,
    }
    if args.pty_cycles:
        report["samv_pty"] = asyncio.run(samv_pty(args.pty_cycles))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

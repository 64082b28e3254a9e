"""PC/SC latency: card inserted (the virtual card connects to vpcd) to the driver's input.

Run from the repository root, as root (pcscd's socket is /run/pcscd), with no other pcscd:

    .venv/bin/python -m benchmarks.pcsc [--count 200] [--transmits 1000]

It starts its own pcscd with the two vpcd readers (as the tests do) and measures, in one run:

* ``driver_insert_to_input_ms``: ``PcscReader.run()`` reading UIDs, from the moment the card
  connects to the moment the driver hands the input to its callback;
* ``pyscard_insert_to_present_ms``: the same insertions seen by a bare pyscard client
  (``SCardGetStatusChange`` on its own thread): how long pcscd takes to notice a card;
* ``driver_input_after_pyscard_present_ms``: per insertion, the driver's input minus the bare
  client's wake-up: the driver's own cost (connect, FF CA, disconnect, thread hops);
* ``pyscard_transmit_uid_ms``: one bare ``SCardTransmit(FF CA 00 00 00)`` through the same pcscd.

pcscd polls readers without hotplug events (vpcd) every 400 ms, so insertions are spread at
random over that period. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import structlog
from smartcard import scard

from gatewayd.drivers import DeviceSpec, RawInput
from gatewayd.events import DeviceState
from gatewayd.plugins.pcsc_reader import GET_UID, PcscOptions, PcscReader
from tests.support.vpcd_card import VPCD_READERS, PcscdProcess, VirtualCard, wait_card_state

READER = VPCD_READERS[0]
POLL_PERIOD = 0.4


def summary(seconds: list[float]) -> dict[str, float | int]:
    ms = sorted(s * 1000 for s in seconds)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "n": len(ms),
        "p50": round(cuts[49], 3),
        "p90": round(cuts[89], 3),
        "p99": round(cuts[98], 3),
        "min": round(ms[0], 3),
        "max": round(ms[-1], 3),
        "mean": round(statistics.fmean(ms), 3),
    }


def timed_insert(card: VirtualCard) -> float:
    started = time.perf_counter()
    card.insert()
    return started


def bare_transmits(count: int) -> list[float]:
    card = VirtualCard()
    card.insert()
    wait_card_state(READER, True)
    _hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    hresult, handle, protocol = scard.SCardConnect(
        context, READER, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
    )
    if hresult != scard.SCARD_S_SUCCESS:
        raise RuntimeError(scard.SCardGetErrorMessage(hresult))
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        hresult, response = scard.SCardTransmit(handle, protocol, list(GET_UID))
        samples.append(time.perf_counter() - started)
        if hresult != scard.SCARD_S_SUCCESS or bytes(response[-2:]) != b"\x90\x00":
            raise RuntimeError(f"transmit failed: {hresult:#x} {bytes(response).hex()}")
    scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
    scard.SCardReleaseContext(context)
    card.remove()
    wait_card_state(READER, False)
    return samples


class PresenceWatcher:
    """A bare pyscard client on its own thread: when pcscd reports each insertion."""

    def __init__(self) -> None:
        self.present_at: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> PresenceWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        _hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        state = scard.SCARD_STATE_UNAWARE
        while not self._stop.is_set():
            hresult, states = scard.SCardGetStatusChange(context, 200, [(READER, state)])
            if hresult != scard.SCARD_S_SUCCESS:
                continue
            new = states[0][1] & ~scard.SCARD_STATE_CHANGED
            if new & scard.SCARD_STATE_PRESENT and (
                not state & scard.SCARD_STATE_PRESENT or new >> 16 != state >> 16
            ):
                self.present_at.append(time.perf_counter())
            state = new
        scard.SCardReleaseContext(context)


async def insertions(count: int) -> dict[str, list[float]]:
    """Insert ``count`` cards; time pcscd noticing each (bare pyscard) and the driver's input."""
    spec = DeviceSpec(
        id="ic1", terminal="T1", driver="pcsc", profile=None, options=PcscOptions(reader=READER)
    )
    driver = PcscReader(spec)
    arrived: asyncio.Queue[float] = asyncio.Queue()

    def on_input(_device: str, _raw: RawInput) -> None:
        arrived.put_nowait(time.perf_counter())

    def on_state(_device: str, _state: DeviceState, _error: str | None) -> None:
        pass

    task = asyncio.create_task(driver.run(on_input, on_state))
    inserted, inputs = [], []
    try:
        while driver.state is not DeviceState.ONLINE:
            await asyncio.sleep(0.01)
        with PresenceWatcher() as watcher:
            for _ in range(count):
                await asyncio.sleep(random.uniform(0, POLL_PERIOD))
                card = VirtualCard()
                inserted.append(await asyncio.to_thread(timed_insert, card))
                inputs.append(await asyncio.wait_for(arrived.get(), 5))
                await asyncio.to_thread(card.remove)
                await asyncio.to_thread(wait_card_state, READER, False)
            await asyncio.sleep(0.3)
    finally:
        await driver.stop()
        await task
    present = watcher.present_at
    if len(present) != count:
        raise RuntimeError(f"the bare client saw {len(present)} insertions of {count}")
    return {
        "driver": [i - s for s, i in zip(inserted, inputs, strict=True)],
        "bare": [p - s for s, p in zip(inserted, present, strict=True)],
        "driver_after_bare": [i - p for p, i in zip(present, inputs, strict=True)],
    }


async def insertions_to_mqtt(count: int) -> list[float]:
    """Insert ``count`` cards with a whole gateway in between: time to the MQTT subscriber."""
    import aiomqtt

    from benchmarks._support import Broker, free_port
    from gatewayd.config import settings_from_dict
    from gatewayd.daemon import Gateway

    broker = Broker()
    workdir = Path(tempfile.mkdtemp(prefix="pcsc-bench-gw-"))
    settings = settings_from_dict({
        "gateway": {"id": "gw1", "store": "bench", "state_dir": str(workdir),
                    "dedupe_window_ms": 0},
        "mqtt": {"url": f"mqtt://127.0.0.1:{broker.port}"},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "devices": [{"id": "ic1", "driver": "pcsc", "terminal": "T1", "reader": READER}],
    })
    gateway = Gateway(settings)
    run = asyncio.create_task(gateway.run(install_signals=False))
    samples = []
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port) as sub:
            await sub.subscribe("gatewayd/v1/bench/terminals/T1/identify", qos=1)
            messages = aiter(sub.messages)
            while not gateway.devices or gateway.devices["ic1"].state is not DeviceState.ONLINE:
                await asyncio.sleep(0.01)
            for _ in range(count):
                await asyncio.sleep(random.uniform(0, POLL_PERIOD))
                card = VirtualCard()
                started = await asyncio.to_thread(timed_insert, card)
                await asyncio.wait_for(anext(messages), 5)
                samples.append(time.perf_counter() - started)
                await asyncio.to_thread(card.remove)
                await asyncio.to_thread(wait_card_state, READER, False)
    finally:
        gateway.request_stop()
        await run
        broker.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="insertions (default 200)")
    parser.add_argument("--transmits", type=int, default=1000, help="bare transmits (1000)")
    args = parser.parse_args()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    with tempfile.TemporaryDirectory(prefix="pcsc-bench-") as workdir:
        pcscd = PcscdProcess(Path(workdir))
        problem = pcscd.preflight()
        if problem:
            sys.exit(f"benchmarks.pcsc: {problem}")
        pcscd.start()
        try:
            transmits = bare_transmits(args.transmits)
            timings = asyncio.run(insertions(args.count))
            to_mqtt = asyncio.run(insertions_to_mqtt(args.count))
        finally:
            pcscd.stop()
    result = {
        "insertions": args.count,
        "pcscd_poll_period_ms": POLL_PERIOD * 1000,
        "driver_insert_to_input_ms": summary(timings["driver"]),
        "pyscard_insert_to_present_ms": summary(timings["bare"]),
        "driver_input_after_pyscard_present_ms": summary(timings["driver_after_bare"]),
        "pyscard_transmit_uid_ms": summary(transmits),
        "card_inserted_to_mqtt_subscriber_ms": summary(to_mqtt),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

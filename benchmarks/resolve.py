"""Resolution through central: scan → ``resolved`` at an MQTT subscriber, and outbox drain.

Gateway and central run on this machine as real processes (central on SQLite with N seeded
members), with a private Mosquitto. Prints JSON:

* ``scan_to_resolved_ms``: a code written to the scanner's pseudo-terminal until the
  ``resolved`` event reaches the subscriber; the raw broker round trip is the baseline;
* ``outbox_drain``: a backlog of identifications written to the gateway's outbox while it was
  down, forwarded to central once it starts: items per second.

    .venv/bin/python benchmarks/resolve.py [--members 1000000] [--scans 2000] [--backlog 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._support import ROOT, Broker, free_port, latency_summary, start_gateway
from gatewayd.outbox import Outbox
from gatewayd.simulate import PtyDevice


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


def status(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/v1/status", timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


async def raw_round_trip(port: int, count: int) -> list[float]:
    samples = []
    async with aiomqtt.Client("127.0.0.1", port) as sub, aiomqtt.Client("127.0.0.1", port) as pub:
        await sub.subscribe("bench/raw", qos=1)
        messages = aiter(sub.messages)
        for n in range(count):
            started = time.perf_counter()
            await pub.publish("bench/raw", f'{{"n": {n}}}'.encode(), qos=1)
            await anext(messages)
            samples.append(time.perf_counter() - started)
    return samples


async def scan_to_resolved(
    port: int, scanner: PtyDevice, cards: list[str], count: int
) -> list[float]:
    samples = []
    async with aiomqtt.Client("127.0.0.1", port) as sub:
        await sub.subscribe("gatewayd/v1/store-1/terminals/pos-1/identify", qos=1)
        messages = aiter(sub.messages)
        await asyncio.sleep(0.5)
        for n in range(count):
            started = time.perf_counter()
            scanner.write(f"{cards[n % len(cards)]}\r".encode())
            while True:
                message = await asyncio.wait_for(anext(messages), 10)
                if json.loads(bytes(message.payload))["phase"] != "detected":  # type: ignore[arg-type]
                    break
            samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--scans", type=int, default=2000)
    parser.add_argument("--backlog", type=int, default=100_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-resolve-"))
    env = {**os.environ, "GATEWAYD_CENTRAL_SECRET": secrets.token_hex(32)}
    db = f"sqlite:///{workdir / 'central.db'}"
    seeded = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gatewayd",
            "central",
            "seed",
            "--members",
            str(args.members),
            "--db",
            db,
            "--keys-out",
            str(workdir / "keys.json"),
        ],
        check=True,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    seed_seconds = time.monotonic() - seeded
    keys = json.loads((workdir / "keys.json").read_text())
    central_port = free_port()
    central = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gatewayd",
            "central",
            "--db",
            db,
            "--listen",
            f"127.0.0.1:{central_port}",
            "--log-level",
            "warning",
            "--identify-rate",
            "1000000",
            "--identify-burst",
            "1000000",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    broker = Broker()
    scanner = PtyDevice(workdir / "scanner")
    http_port = free_port()
    state = workdir / "gateway"
    config = workdir / "gw.toml"
    config.write_text(
        f'[gateway]\nid = "gw-1"\nstore = "store-1"\nstate_dir = "{state}"\n'
        f"dedupe_window_ms = 0\n"
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{broker.port}"\nqueue_size = 200000\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
        f'[central]\nurl = "http://127.0.0.1:{central_port}"\n'
        f'key = "{keys["gateways"]["gw-1"]["api_key"]}"\n'
        f'[[devices]]\nid = "scan1"\ndriver = "serial_scanner"\nterminal = "pos-1"\n'
        f'port = "{scanner.path}"\n'
    )
    base = f"http://127.0.0.1:{http_port}"
    cards = keys["samples"]["card_numbers"] + keys["samples"]["member_codes"]
    gateway = None
    try:
        wait_http(f"http://127.0.0.1:{central_port}/healthz")
        gateway = start_gateway(config)
        wait_http(f"{base}/healthz")
        baseline = asyncio.run(raw_round_trip(broker.port, args.scans))
        resolved = asyncio.run(scan_to_resolved(broker.port, scanner, cards, args.scans))
        gateway.terminate()
        gateway.wait(10)
        # A backlog as a long outage leaves it: identifications written, none forwarded.
        box = Outbox(state / "outbox.sqlite3", max_items=args.backlog * 2)
        old = time.time() - 3600
        for n in range(args.backlog):
            box.put(
                "identify",
                f"backlog-{n:08d}",
                {
                    "token": cards[n % len(cards)],
                    "kind": "card_number" if n % len(cards) < 5 else "member_code",
                    "method": "barcode",
                    "store": "store-1",
                    "terminal": "pos-1",
                },
                now=old,
            )
        box.close()
        gateway = start_gateway(config)
        wait_http(f"{base}/healthz")
        started = time.monotonic()
        while status(base)["central"]["outbox"]["depth"] > 0:
            time.sleep(0.2)
            if time.monotonic() - started > 1800:
                break
        drain_seconds = time.monotonic() - started
        depth = status(base)["central"]["outbox"]["depth"]
    finally:
        for process in (gateway, central):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        broker.close()
        scanner.close()
    raw, gw = latency_summary(baseline), latency_summary(resolved)
    print(
        json.dumps(
            {
                "benchmark": "resolve",
                "members": args.members,
                "seed_seconds": round(seed_seconds, 1),
                "raw_broker_round_trip": raw,
                "scan_to_resolved": gw,
                "resolution_added_p99_ms": round(gw["p99_ms"] - raw["p99_ms"], 3),
                "outbox_drain": {
                    "backlog": args.backlog,
                    "seconds": round(drain_seconds, 2),
                    "items_per_second": round((args.backlog - depth) / drain_seconds, 1),
                    "left": depth,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""Scan-to-subscriber latency of the gateway against the raw broker round trip.

10 000 scans are written one at a time to a pseudo-terminal that a real gatewayd process
reads as a serial scanner; an MQTT subscriber on the terminal's identify topic times each
one. In the same run, the raw broker round trip (publish → receive on the same broker, with
the same client library) is the baseline. Prints JSON.

    .venv/bin/python benchmarks/pipeline.py [--scans 10000] [--idle-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._support import (
    Broker,
    cpu_seconds,
    free_port,
    latency_summary,
    rss_mb,
    start_gateway,
)
from gatewayd.simulate import PtyDevice


async def raw_round_trip(port: int, count: int) -> list[float]:
    samples = []
    async with aiomqtt.Client("127.0.0.1", port) as sub, aiomqtt.Client("127.0.0.1", port) as pub:
        await sub.subscribe("bench/raw", qos=1)
        messages = aiter(sub.messages)
        for n in range(count):
            payload = f'{{"n": {n}}}'.encode()
            started = time.perf_counter()
            await pub.publish("bench/raw", payload, qos=1)
            await anext(messages)
            samples.append(time.perf_counter() - started)
    return samples


async def gateway_latency(port: int, scanner: PtyDevice, count: int) -> list[float]:
    samples = []
    async with aiomqtt.Client("127.0.0.1", port) as sub:
        await sub.subscribe("gatewayd/v1/bench/terminals/pos1/identify", qos=1)
        messages = aiter(sub.messages)
        await asyncio.sleep(0.5)
        for n in range(count):
            code = f"{80000000 + n}\r".encode()
            started = time.perf_counter()
            scanner.write(code)
            await anext(messages)
            samples.append(time.perf_counter() - started)
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scans", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    broker = Broker()
    workdir = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    scanner = PtyDevice(workdir / "scanner")
    http_port = free_port()
    config = workdir / "gw.toml"
    config.write_text(
        f'[gateway]\nid = "gw1"\nstore = "bench"\nstate_dir = "{workdir}"\ndedupe_window_ms = 0\n'
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{broker.port}"\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
        f'[[devices]]\nid = "scan1"\ndriver = "serial_scanner"\nterminal = "pos1"\n'
        f'port = "{scanner.path}"\n'
    )
    gateway = start_gateway(config)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=0.5)
                break
            except OSError:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        idle_cpu_start = cpu_seconds(gateway.pid)
        await asyncio.sleep(args.idle_seconds)
        idle_cpu = (cpu_seconds(gateway.pid) - idle_cpu_start) / args.idle_seconds * 100
        baseline = await raw_round_trip(broker.port, args.scans)
        cpu_before = cpu_seconds(gateway.pid)
        measured = await gateway_latency(broker.port, scanner, args.scans)
        cpu_used = cpu_seconds(gateway.pid) - cpu_before
        rss = rss_mb(gateway.pid)
    finally:
        gateway.terminate()
        gateway.wait(10)
        scanner.close()
        broker.close()
    raw, gw = latency_summary(baseline), latency_summary(measured)
    print(
        json.dumps(
            {
                "benchmark": "pipeline",
                "scans": args.scans,
                "raw_broker_round_trip": raw,
                "scan_to_subscriber": gw,
                "gateway_added_p50_ms": round(gw["p50_ms"] - raw["p50_ms"], 3),
                "gateway_added_p99_ms": round(gw["p99_ms"] - raw["p99_ms"], 3),
                "ratio_p99": round(gw["p99_ms"] / raw["p99_ms"], 2),
                "gateway_rss_mb": round(rss, 1),
                "gateway_cpu_seconds": round(cpu_used, 2),
                "gateway_cpu_us_per_scan": round(cpu_used / args.scans * 1e6, 1),
                "gateway_idle_cpu_percent": round(idle_cpu, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())

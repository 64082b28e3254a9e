"""Benchmark: identify throughput and p99 at 64 connections, SQLite and PostgreSQL.

For each backend the script builds a chain of ``--members`` members (default 1 000 000) with
``gatewayd central seed``'s bulk loader, starts ``gatewayd central`` in a subprocess, and
drives ``POST /v1/identify`` (member codes, a fresh ``event_id`` each, as gateways send them)
over 64 keep-alive connections for ``--seconds``. In the same run a bare aiohttp handler
that returns a constant is measured with the same client: the framework's ceiling on this
machine. PostgreSQL is a throwaway cluster the script starts and removes itself.

    .venv/bin/python benchmarks/central.py --members 20000 --seconds 3   # quick
    .venv/bin/python benchmarks/central.py                               # the full run

Prints one JSON document; ``ratio`` is central's throughput over the bare handler's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from gatewayd.central import logs
from gatewayd.central.clock import SystemClock
from gatewayd.central.config import CentralSettings
from gatewayd.central.db import Database
from gatewayd.central.migrate import upgrade
from gatewayd.central.models import cards
from gatewayd.central.seed import seed
from gatewayd.central.testing import ThrowawayPostgres, free_port, wait_for_port

SECRET = "benchmark-secret"
BARE_SERVER = """
import sys
from aiohttp import web
async def identify(request):
    await request.read()
    return web.json_response({"member": {"id": 1, "name": "x"}, "card": None})
app = web.Application()
app.router.add_post("/v1/identify", identify)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def drive(
    url: str, requests: list[tuple[dict[str, Any], str]], *, connections: int, seconds: float
) -> dict[str, Any]:
    """``connections`` clients in a loop for ``seconds`` (after a 1 s warm-up)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=connections)
    counter = iter(range(10**12))
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client(deadline: float, record: bool) -> None:
            while time.perf_counter() < deadline:
                payload, key = requests[next(counter) % len(requests)]
                body = {**payload, "event_id": f"bench-{os.getpid()}-{next(counter)}"}
                started = time.perf_counter()
                async with http.post(
                    url, json=body, headers={"Authorization": f"Bearer {key}"}
                ) as resp:
                    await resp.read()
                if record:
                    latencies.append(time.perf_counter() - started)
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        warm = time.perf_counter() + 1.0
        await asyncio.gather(*(client(warm, False) for _ in range(connections)))
        started = time.perf_counter()
        end = started + seconds
        await asyncio.gather(*(client(end, True) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def start_process(args: list[str], port: int, env: dict[str, str] | None = None) -> Any:
    proc = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port, timeout=60)
    return proc


def stop_process(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


async def prepare(db_url: str, members: int) -> tuple[float, list[tuple[dict[str, Any], str]]]:
    """Seed the chain; return seed seconds and the identify requests to replay."""
    settings = CentralSettings(db=db_url, secret=SECRET)
    db = Database.from_url(db_url)
    try:
        started = time.perf_counter()
        await upgrade(db)
        result = await seed(db, settings, SystemClock(), members_count=members)
        seeded = time.perf_counter() - started
        async with db.read() as conn:
            ids = random.sample(range(1, members + 1), min(members, 5000))
            rows = (
                await conn.execute(
                    sa.select(cards.c.member_code).where(
                        cards.c.member_id.in_(ids), cards.c.is_main
                    )
                )
            ).all()
    finally:
        await db.close()
    requests = []
    terminals = ("pos-1", "pos-2", "kiosk-1")
    gateways = list(result.gateways.values())
    for n, row in enumerate(rows):
        gateway = gateways[n % len(gateways)]
        payload = {
            "token": row.member_code,
            "store": gateway["store"],
            "terminal": terminals[n % len(terminals)],
        }
        requests.append((payload, gateway["api_key"]))
    return seeded, requests


async def bench_backend(name: str, db_url: str, options: argparse.Namespace) -> dict[str, Any]:
    seeded, requests = await prepare(db_url, options.members)
    port = free_port()
    server = await asyncio.to_thread(
        start_process,
        [
            sys.executable,
            "-m",
            "gatewayd.central",
            "central",
            "--db",
            db_url,
            "--listen",
            f"127.0.0.1:{port}",
            "--workers",
            str(options.workers),
            "--identify-rate",
            "1000000",
            "--identify-burst",
            "1000000",
            "--log-level",
            "warning",
        ],
        port,
        {"GATEWAYD_CENTRAL_SECRET": SECRET},
    )
    try:
        result = await drive(
            f"http://127.0.0.1:{port}/v1/identify",
            requests,
            connections=options.connections,
            seconds=options.seconds,
        )
    finally:
        await asyncio.to_thread(stop_process, server)
    return {"backend": name, "seed_seconds": round(seeded, 1), **result}


async def main_async(options: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "members": options.members,
        "connections": options.connections,
        "seconds": options.seconds,
        "workers": options.workers,
        "cpus": os.cpu_count(),
    }
    port = free_port()
    bare = await asyncio.to_thread(
        start_process, [sys.executable, "-c", BARE_SERVER, str(port)], port
    )
    try:
        baseline = await drive(
            f"http://127.0.0.1:{port}/v1/identify",
            [({"token": "x", "store": "s", "terminal": "t"}, "k")],
            connections=options.connections,
            seconds=options.seconds,
        )
    finally:
        await asyncio.to_thread(stop_process, bare)
    report["bare_aiohttp"] = baseline
    with tempfile.TemporaryDirectory(prefix="central-bench-") as tmp:
        if "sqlite" in options.backends:
            url = f"sqlite:///{Path(tmp) / 'central.db'}"
            report["sqlite"] = await bench_backend("sqlite", url, options)
        if "postgresql" in options.backends:
            cluster = ThrowawayPostgres()
            await asyncio.to_thread(cluster.start)
            try:
                await asyncio.to_thread(cluster.create_database, "central")
                report["postgresql"] = await bench_backend(
                    "postgresql", cluster.url("central"), options
                )
            finally:
                await asyncio.to_thread(cluster.stop)
    for backend in ("sqlite", "postgresql"):
        if backend in report and baseline["rps"]:
            report[backend]["ratio"] = round(report[backend]["rps"] / baseline["rps"], 3)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="central processes")
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql"
    )
    options = parser.parse_args(argv)
    options.backends = set(options.backends.split(","))
    logs.configure("warning")  # stdout carries only the JSON report
    report = asyncio.run(main_async(options))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: order commit throughput on PostgreSQL at 32 concurrent clients.

``commit_throughput`` migrates the database at ``pg_url`` (an empty one), registers a store,
a till and one member per client with stored value and a password-free payment mix, starts
central on a free local port in this process and has ``clients`` keep-alive connections
commit quick-spend orders (cash plus points redemption, so each order posts three ledger
entries and the earned-points cache) for ``seconds``. Each client works on its own member,
as tills do; one shared member would measure row-lock queueing instead. At the end the
ledger is verified. Client and server share one event loop, so the figure is a floor.

    .venv/bin/python benchmarks/programme_commit.py --seconds 5   # starts a throwaway cluster

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import aiohttp

from gatewayd.central import ledger, logs
from gatewayd.central.app import build_app
from gatewayd.central.auth import create_admin_key
from gatewayd.central.clock import SystemClock
from gatewayd.central.config import CentralSettings
from gatewayd.central.db import Database
from gatewayd.central.migrate import upgrade
from gatewayd.central.testing import ThrowawayPostgres, start_app

SECRET = "benchmark-secret"


async def _prepare(
    base: str, http: aiohttp.ClientSession, admin: str, clients: int
) -> tuple[str, list[int]]:
    headers = {"Authorization": f"Bearer {admin}"}

    async def call(method: str, path: str, body: Any) -> Any:
        async with http.request(method, base + path, json=body, headers=headers) as resp:
            answer = await resp.json()
            assert resp.status < 300, (path, answer)
            return answer

    await call("POST", "/v1/stores", {"id": "bench", "name": "Bench"})
    await call("POST", "/v1/stores/bench/terminals", {"id": "pos-1", "name": "POS"})
    gateway = await call("POST", "/v1/gateways", {"id": "gw-bench", "store": "bench", "name": "GW"})
    members = []
    for n in range(clients):
        member = await call(
            "POST", "/v1/members", {"name": f"Bench {n}", "points": 10**9, "balance_fen": 0}
        )
        members.append(member["id"])
    return gateway["api_key"], members


async def commit_throughput(pg_url: str, clients: int = 32, seconds: float = 10) -> dict[str, Any]:
    """Orders committed per second by ``clients`` concurrent tills against ``pg_url``."""
    db = Database.from_url(pg_url)
    try:
        await upgrade(db)
        _, admin = await create_admin_key(db, "bench", SystemClock())
    finally:
        await db.close()
    settings = CentralSettings(db=pg_url, secret=SECRET, log_level="warning")
    runner, base = await start_app(build_app(settings))
    latencies: list[float] = []
    errors: dict[int, int] = {}
    try:
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as http:
            gateway_key, members = await _prepare(base, http, admin, clients)
            headers = {"Authorization": f"Bearer {gateway_key}"}
            deadline = time.perf_counter() + seconds

            async def till(n: int) -> None:
                count = 0
                while time.perf_counter() < deadline:
                    count += 1
                    body = {
                        "request_id": f"t{n}-{count}",
                        "store": "bench",
                        "terminal": "pos-1",
                        "member": members[n],
                        "amount_fen": 10_000,
                        "payments": [
                            {"method": "points", "points": 1_000},
                            {"method": "cash", "amount_fen": 9_000},
                        ],
                    }
                    started = time.perf_counter()
                    async with http.post(base + "/v1/orders", json=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status == 201:
                            latencies.append(time.perf_counter() - started)
                        else:
                            errors[resp.status] = errors.get(resp.status, 0) + 1

            began = time.perf_counter()
            await asyncio.gather(*(till(n) for n in range(clients)))
            elapsed = time.perf_counter() - began
    finally:
        await runner.cleanup()
    db = Database.from_url(pg_url)
    try:
        mismatches = len(await ledger.verify(db))
    finally:
        await db.close()
    ordered = sorted(latencies)
    return {
        "backend": "postgresql",
        "clients": clients,
        "seconds": round(elapsed, 2),
        "orders": len(latencies),
        "orders_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else None,
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2) if ordered else None,
        "errors": errors,
        "ledger_mismatches": mismatches,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", help="an empty PostgreSQL database (default: throwaway)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    options = parser.parse_args(argv)
    logs.configure("warning", json=False)
    if options.pg_url:
        result = asyncio.run(commit_throughput(options.pg_url, options.clients, options.seconds))
    else:
        with ThrowawayPostgres() as cluster:
            url = cluster.create_database("programme_bench")
            result = asyncio.run(commit_throughput(url, options.clients, options.seconds))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

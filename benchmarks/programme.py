"""Benchmark: the membership programme. Quote latency for a 50-line order under 20 rules.

Target (issue #7): p99 ≤ 2 ms for a quote of 50 lines with 20 active rules. Measured three
ways, so a regression can be placed:

* ``engine``: ``compute_quote`` alone (pure Python, no I/O), on the rule book and products
  central loaded from the database;
* ``service``: ``Pricing.quote`` in this process on the same database: the catalog-version
  check, the member look-up and the product cache included, no HTTP;
* ``http``: ``POST /v1/orders/quote`` to ``gatewayd central`` in its own process, one
  keep-alive connection, one request at a time (the latency a till sees), with a gateway key.
  In the same run a bare aiohttp handler (reads the body, answers a constant) is measured
  with the same client and body: the framework's and the client's own share of that latency.

Each backend gets a fresh database: SQLite file, and (``--backends`` includes it) a throwaway
PostgreSQL cluster the script starts and removes itself. On PostgreSQL it then measures order
commit throughput at 32 concurrent clients (``benchmarks/programme_commit.py``,
``--commit-seconds``; 0 skips it) as ``order_commit``.

    .venv/bin/python benchmarks/programme.py                      # both backends
    .venv/bin/python benchmarks/programme.py --backends sqlite --requests 500

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._support import latency_summary
from benchmarks.programme_commit import commit_throughput
from gatewayd.central import logs
from gatewayd.central.auth import create_admin_key
from gatewayd.central.catalog import Catalog
from gatewayd.central.clock import SystemClock
from gatewayd.central.db import Database
from gatewayd.central.migrate import upgrade
from gatewayd.central.pricing import (
    PricedLine,
    Pricing,
    QuoteRequest,
    compute_quote,
)
from gatewayd.central.registry import Registry
from gatewayd.central.testing import ThrowawayPostgres, free_port

SECRET = "benchmark-secret"
LINES = 50
PRODUCTS = 200
BARE_SERVER = """
import sys
from aiohttp import web
async def quote(request):
    await request.read()
    return web.json_response({"total_fen": 1, "points": 1, "lines": []})
app = web.Application()
app.router.add_post("/v1/orders/quote", quote)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def twenty_rules(today: dt.date) -> list[dict[str, Any]]:
    """20 active rules of every kind, several of which match the benchmark's order."""
    rules: list[dict[str, Any]] = [
        {"kind": "level", "name": "gold here", "level": "gold", "store": "store-1",
         "discount": "0.92", "points": "1.6"},
        {"kind": "birthday", "name": "birthday month", "birthday_window": "month", "points": 2},
        {"kind": "birthday", "name": "birthday day", "birthday_window": "day", "points": 3},
        {"kind": "store", "name": "flagship", "store": "store-1", "points": 2},
        {"kind": "time_slot", "name": "weekday", "slot": "weekly", "days": [1, 2, 3, 4, 5, 6, 7],
         "discount": "0.98"},
        {"kind": "time_slot", "name": "the 8th", "slot": "monthly", "days": [8], "points": 2},
        {"kind": "time_slot", "name": "today yearly", "slot": "yearly",
         "date": today.strftime("%m-%d"), "discount": "0.97"},
        {"kind": "time_slot", "name": "today", "slot": "date", "date": today.isoformat(),
         "discount": "0.95", "from_time": "00:00", "until_time": "24:00"},
        {"kind": "order_amount", "name": "100+", "min_fen": 10_000, "extra_discount_percent": 2},
        {"kind": "order_amount", "name": "500+", "min_fen": 50_000, "extra_discount_percent": 5,
         "extra_points_percent": 10},
        {"kind": "order_amount", "name": "2000+", "min_fen": 200_000, "max_fen": 10_000_000,
         "extra_discount_percent": 8, "extra_points_percent": 20},
    ]  # fmt: skip
    for n in range(6):
        rules.append({"kind": "product", "name": f"p{n}", "product": f"p{n * 7:03d}",
                      "discount": "0.9", "points": "1.5"})  # fmt: skip
    for n in range(3):
        rules.append({"kind": "category", "name": f"c{n}", "category": f"c{n}",
                      "discount": "0.85"})  # fmt: skip
    assert len(rules) == 20
    return rules


async def setup_chain(url: str, admin_key: str, today: dt.date) -> tuple[str, dict[str, Any]]:
    """Store, gateway, catalog, level, 20 rules and a member, all through the API."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def call(method: str, path: str, body: Any) -> Any:
            async with http.request(method, url + path, json=body) as resp:
                answer = await resp.json()
                assert resp.status < 300, (path, resp.status, answer)
                return answer

        await call("POST", "/v1/stores", {"id": "store-1", "name": "Flagship"})
        await call("POST", "/v1/stores/store-1/terminals", {"id": "pos-1", "name": "Lane 1"})
        gateway = await call(
            "POST", "/v1/gateways", {"id": "gw-1", "store": "store-1", "name": "g"}
        )
        for n in range(5):
            await call("PUT", f"/v1/catalog/categories/c{n}", {"name": f"Category {n}"})
        for n in range(PRODUCTS):
            body = {"name": f"Product {n}", "category": f"c{n % 5}", "price_fen": 500 + n * 37}
            await call("PUT", f"/v1/catalog/products/p{n:03d}", body)
        await call("PUT", "/v1/pricing/levels/gold", {"name": "Gold", "discount": "0.95",
                                                       "points": "1.5"})  # fmt: skip
        for rule in twenty_rules(today):
            await call("POST", "/v1/pricing/rules", rule)
        birthday = today.replace(year=1990) if (today.month, today.day) != (2, 29) else None
        member = await call(
            "POST", "/v1/members", {"name": "Bench", "level": "gold",
                                    "birthday": birthday.isoformat() if birthday else None}
        )  # fmt: skip
    order = {
        "store": "store-1",
        "terminal": "pos-1",
        "member": member["id"],
        "lines": [
            {"product": f"p{(n * 3) % PRODUCTS:03d}", "quantity": str(1 + n % 4) + ".5"}
            for n in range(LINES)
        ],
    }
    return str(gateway["api_key"]), order


async def sequential(url: str, key: str, body: dict[str, Any], count: int) -> dict[str, Any]:
    """``count`` requests one after another on one keep-alive connection."""
    payload = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=1)
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        for n in range(count + count // 10):  # the first tenth warms up
            started = time.perf_counter()
            async with http.post(url, data=payload) as resp:
                await resp.read()
                assert resp.status == 200, (resp.status, await resp.text())
            if n >= count // 10:
                latencies.append(time.perf_counter() - started)
    return latency_summary(latencies)


def start_process(args: list[str], port: int, env: dict[str, str] | None = None) -> Any:
    """Start a server and wait until it listens; if it dies first, say why."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the child writes to it while it runs
    proc = subprocess.Popen(
        args, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=log
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    log.seek(0)
    raise RuntimeError(f"{' '.join(args[:4])} did not start: {log.read()[-2000:].decode()}")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sequential_with_cpu(
    url: str, key: str, body: dict[str, Any], count: int, pid: int
) -> dict[str, Any]:
    """``sequential`` plus the server's CPU time per request: the cost of one request, which
    other load on the machine disturbs far less than latency."""
    before = process_cpu(pid)
    result = await sequential(url, key, body, count)
    spent = process_cpu(pid) - before
    return {**result, "server_cpu_ms": round(spent / (count + count // 10) * 1000, 3)}


def stop_process(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


async def in_process(db_url: str, order: dict[str, Any], count: int) -> dict[str, Any]:
    """The engine alone and the pricing service without HTTP, on the same database."""
    db = Database.from_url(db_url)
    try:
        clock = SystemClock()
        catalog = Catalog(db, clock)
        pricing = Pricing(catalog, Registry(db, clock, 90.0))
        request = QuoteRequest.model_validate(order)
        await pricing.quote(request)  # loads the snapshot and the 50 products
        snapshot = await catalog.snapshot()
        member = await catalog.member_facts(order["member"])
        products = snapshot.products
        lines = [
            PricedLine(products[ln.product], ln.quantity, products[ln.product].price_fen)
            for ln in request.lines
            if ln.product is not None
        ]
        zone = ZoneInfo("Asia/Shanghai")
        engine: list[float] = []
        cpu_started = time.process_time()
        for _ in range(count):
            started = time.perf_counter()
            compute_quote(
                snapshot.book,
                store="store-1",
                timezone=zone,
                member=member,
                lines=lines,
                at_ms=int(time.time() * 1000),
            )
            engine.append(time.perf_counter() - started)
        engine_cpu = time.process_time() - cpu_started
        service: list[float] = []
        cpu_started = time.process_time()
        for _ in range(count):
            started = time.perf_counter()
            await pricing.quote(request)
            service.append(time.perf_counter() - started)
        service_cpu = time.process_time() - cpu_started
        applied = (await pricing.quote(request)).lines[0].factors
    finally:
        await db.close()
    return {
        # CPU time per quote: what the work costs, less disturbed by other load than latency.
        "engine": {**latency_summary(engine), "cpu_ms": round(engine_cpu / count * 1000, 3)},
        "service": {**latency_summary(service), "cpu_ms": round(service_cpu / count * 1000, 3)},
        "factors_on_first_line": [f.kind for f in applied],
    }


async def bench_backend(db_url: str, options: argparse.Namespace) -> dict[str, Any]:
    db = Database.from_url(db_url)
    try:
        await upgrade(db)
        _, admin_key = await create_admin_key(db, "bench", SystemClock())
    finally:
        await db.close()
    port = free_port()
    command = [sys.executable, "-m", "gatewayd.central", "central", "--db", db_url,
               "--listen", f"127.0.0.1:{port}", "--log-level", "warning"]  # fmt: skip
    server = await asyncio.to_thread(
        start_process, command, port, {"GATEWAYD_CENTRAL_SECRET": SECRET}
    )
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    try:
        url = f"http://127.0.0.1:{port}"
        gateway_key, order = await setup_chain(url, admin_key, today)
        http = await sequential_with_cpu(
            url + "/v1/orders/quote", gateway_key, order, options.requests, server.pid
        )
    finally:
        await asyncio.to_thread(stop_process, server)
    return {"http": http, **await in_process(db_url, order, options.requests)}


async def main_async(options: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "lines": LINES,
        "active_rules": 20,
        "requests": options.requests,
        "cpus": os.cpu_count(),
        # Other work on the machine inflates every latency here: compare within one run.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "target_p99_ms": 2.0,
    }
    with tempfile.TemporaryDirectory(prefix="programme-bench-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        bare = await asyncio.to_thread(
            start_process, [sys.executable, "-c", BARE_SERVER, str(port)], port
        )
        try:
            body = {"store": "store-1", "lines": [{"product": "p000"}] * LINES}
            report["bare_aiohttp_http"] = await sequential_with_cpu(
                f"http://127.0.0.1:{port}/v1/orders/quote", "k", body, options.requests, bare.pid
            )
        finally:
            await asyncio.to_thread(stop_process, bare)
        quotes: dict[str, Any] = {}
        if "sqlite" in options.backends:
            quotes["sqlite"] = await bench_backend(f"sqlite:///{tmp / 'central.db'}", options)
        if "postgresql" in options.backends:
            cluster = ThrowawayPostgres()
            await asyncio.to_thread(cluster.start)
            try:
                await asyncio.to_thread(cluster.create_database, "central")
                quotes["postgresql"] = await bench_backend(cluster.url("central"), options)
                if options.commit_seconds > 0:
                    # Order commit throughput at 32 clients, on a database of its own.
                    await asyncio.to_thread(cluster.create_database, "orders")
                    report["order_commit"] = await commit_throughput(
                        cluster.url("orders"), clients=32, seconds=options.commit_seconds
                    )
            finally:
                await asyncio.to_thread(cluster.stop)
        report["quote"] = quotes
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="quotes per measurement")
    parser.add_argument(
        "--commit-seconds",
        type=float,
        default=10.0,
        help="order commit run on PostgreSQL (0: skip)",
    )
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql"
    )
    options = parser.parse_args(argv)
    logs.configure("warning")
    report = asyncio.run(main_async(options))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

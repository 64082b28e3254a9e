"""Benchmark: 10 000 gateways heartbeating every 30 s into one central, and the dashboard.

The script registers ``--gateways`` gateways (10 per store, each with its own API key) in a
fresh database, starts one ``gatewayd central`` process and plays the fleet: every gateway
posts a heartbeat through its outbox endpoint (``POST /v1/gateways/{id}/outbox``, the path
real gateways use, with a realistic body: four devices, counters, outbox depth, uptime,
version, two recent errors) once per ``--interval``, the fleet spread evenly over the
interval (10 000 / 30 s ≈ 333 requests a second), for ``--seconds``. Measured:

* heartbeat latency (p50/p99 from send to answer) and how late the client sent (``lag``);
* central's CPU use over the run (% of one core, user + system, from ``/proc``);
* the dashboard overview under that load: the HTTP time of ``GET /v1/dashboard/overview``
  (first page, and filtered by state and by a search), sampled once a second;
* after the run, the overview page's load in headless Chromium (signed in; from navigation
  to the first page of gateways rendered).

A bare aiohttp handler that reads the body, parses the JSON and answers a constant is driven
with the same schedule for ``--bare-seconds`` in the same run: the floor for latency.

    .venv/bin/python benchmarks/fleet.py --seconds 30          # SQLite, ~1 minute in all
    .venv/bin/python benchmarks/fleet.py --backends sqlite,postgresql

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._support import latency_summary, percentile
from benchmarks.central import process_tree_cpu, start_process, stop_process
from gatewayd.central.admin_users import add_admin_user
from gatewayd.central.auth import hash_key, new_key
from gatewayd.central.clock import SystemClock
from gatewayd.central.db import Database
from gatewayd.central.migrate import upgrade
from gatewayd.central.models import api_keys, gateways, stores
from gatewayd.central.testing import ThrowawayPostgres, free_port

SECRET = "benchmark-secret"
PASSWORD = "benchmark password"
PER_STORE = 10
BARE_SERVER = """
import sys
from aiohttp import web
async def outbox(request):
    body = await request.json()
    return web.json_response({"results": [{"key": i["key"], "status": 200} for i in body["items"]]})
app = web.Application()
app.router.add_post("/v1/gateways/{gateway_id}/outbox", outbox)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def heartbeat_body(n: int, beat: int, now: str) -> dict[str, Any]:
    """What ``gatewayd/central_link.py`` sends, with plausible values."""
    payload = {
        "ts": now,
        "devices": {
            "lane1-gun": "online",
            "lane2-gun": "online",
            "card-reader": "online" if n % 50 else "offline",
            "face-1": "online",
        },
        "counters": {"barcode": 40 * beat + n % 7, "card": 9 * beat, "face": 3 * beat},
        "outbox": {"depth": 0 if n % 100 else 250, "dropped": 0},
        "uptime": 86_400 + 30 * beat,
        "version": "0.1.0",
        "last_identification": now,
        "errors": [
            {
                "timestamp": now,
                "level": "warning",
                "event": "input_rejected",
                "device": "lane1-gun",
                "error": "token of 300 characters is too long",
            },
            {
                "timestamp": now,
                "level": "warning",
                "event": "device_reconnect",
                "device": "card-reader",
                "error": "read timeout",
            },
        ],
    }
    return {"items": [{"kind": "heartbeat", "key": f"heartbeat:{now}:{n}", "payload": payload}]}


async def register_fleet(db_url: str, count: int) -> tuple[list[tuple[str, str]], str]:
    """Stores, gateways and keys in bulk; returns [(gateway id, key)] and an admin key."""
    db = Database.from_url(db_url)
    now = int(time.time() * 1000)
    fleet = [(f"gw-{n:05d}", new_key("gateway")) for n in range(count)]
    admin = new_key("admin")
    try:
        await upgrade(db)
        async with db.write() as conn:
            await conn.execute(
                stores.insert(),
                [
                    {
                        "id": f"store-{s:04d}",
                        "name": f"Store {s}",
                        "address": None,
                        "created_at": now,
                    }
                    for s in range((count + PER_STORE - 1) // PER_STORE)
                ],
            )
            await conn.execute(
                gateways.insert(),
                [
                    {
                        "id": g,
                        "store_id": f"store-{n // PER_STORE:04d}",
                        "name": f"Gateway {n}",
                        "created_at": now,
                    }
                    for n, (g, _) in enumerate(fleet)
                ],
            )
            await conn.execute(
                api_keys.insert(),
                [
                    {
                        "key_hash": hash_key(k),
                        "prefix": k[:8],
                        "role": "gateway",
                        "gateway_id": g,
                        "name": g,
                        "created_at": now,
                    }
                    for g, k in fleet
                ]
                + [
                    {
                        "key_hash": hash_key(admin),
                        "prefix": admin[:8],
                        "role": "admin",
                        "gateway_id": None,
                        "name": "bench",
                        "created_at": now,
                    }
                ],
            )
        await add_admin_user(db, SystemClock(), "bench", PASSWORD)
    finally:
        await db.close()
    return fleet, admin


async def play_fleet(
    url: str, fleet: list[tuple[str, str]], interval: float, seconds: float
) -> dict[str, Any]:
    """Send every gateway's heartbeat on its slot; returns latency and lag figures."""
    latencies: list[float] = []
    lags: list[float] = []
    failures: dict[str, int] = {}
    slot = interval / len(fleet)
    total = int(seconds / slot)
    start = time.perf_counter() + 0.5
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(k: int) -> None:
            n = k % len(fleet)
            gateway_id, key = fleet[n]
            due = start + k * slot
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            body = json.dumps(
                heartbeat_body(n, k // len(fleet), time.strftime("%Y-%m-%dT%H:%M:%SZ"))
            )
            sent = time.perf_counter()
            lags.append(sent - due)
            try:
                async with http.post(
                    f"{url}/v1/gateways/{gateway_id}/outbox",
                    data=body,
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        failures[str(resp.status)] = failures.get(str(resp.status), 0) + 1
            except aiohttp.ClientError as exc:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                return
            latencies.append(time.perf_counter() - sent)

        tasks: list[asyncio.Task[None]] = []
        for k in range(total):  # created in batches so that thousands of sleepers stay cheap
            while start + k * slot - time.perf_counter() > 2.0:
                await asyncio.sleep(0.5)
            tasks.append(asyncio.create_task(one(k)))
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {
        "heartbeats": len(latencies),
        "offered_rps": round(total / seconds, 1),
        "achieved_rps": round(len(latencies) / elapsed, 1),
        **latency_summary(latencies),
        "lag_p99_ms": round(percentile([x * 1000 for x in lags], 99), 2) if lags else None,
        "failures": failures,
    }


async def sample_overview(url: str, admin: str, stop: asyncio.Event) -> dict[str, Any]:
    """The overview JSON's HTTP time while the fleet heartbeats: one view a second, as a few
    people at HQ opening and filtering the dashboard (its live updates come over SSE)."""
    queries = ("", "?state=online", "?q=store-0042", "?state=offline&page=3")
    times: dict[str, list[float]] = {q: [] for q in queries}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as http:
        turn = 0
        while not stop.is_set():
            query = queries[turn % len(queries)]
            turn += 1
            started = time.perf_counter()
            async with http.get(f"{url}/v1/dashboard/overview{query}") as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            times[query].append(time.perf_counter() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    return {(q or "first page"): latency_summary(t) for q, t in times.items() if t}


async def page_load(url: str) -> dict[str, Any]:
    """Sign in with headless Chromium and time the overview page to its rendered rows."""
    from tests.support.browser import page as browser_page

    async with browser_page() as page:
        await page.goto(url + "/dashboard/login")
        await page.fill("#name", "bench")
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector("tr[data-gateway]")
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            await page.goto(url + "/dashboard/")
            await page.wait_for_selector("tr[data-gateway]")
            runs.append(time.perf_counter() - started)
        rows = await page.locator("tr[data-gateway]").count()
    return {"rows_rendered": rows, **latency_summary(runs)}


async def bench_backend(name: str, db_url: str, options: argparse.Namespace) -> dict[str, Any]:
    fleet, admin = await register_fleet(db_url, options.gateways)
    port = free_port()
    server = await asyncio.to_thread(
        start_process,
        [
            sys.executable,
            "-m",
            "gatewayd",
            "central",
            "--db",
            db_url,
            "--listen",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--workers",
            str(options.workers),
        ],
        port,
        {"GATEWAYD_CENTRAL_SECRET": SECRET, "GATEWAYD_CENTRAL_ALERT_INTERVAL": "30"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_overview(url, admin, stop))
        cpu_before, wall_before = process_tree_cpu(server.pid), time.perf_counter()
        heartbeats = await play_fleet(url, fleet, options.interval, options.seconds)
        cpu = process_tree_cpu(server.pid) - cpu_before
        wall = time.perf_counter() - wall_before
        stop.set()
        overview = await sampler
        browser = await page_load(url) if options.browser else None
    finally:
        await asyncio.to_thread(stop_process, server)
    return {
        "backend": name,
        "central_cpu_percent": round(cpu / wall * 100, 1),
        "central_cpu_us_per_heartbeat": round(cpu / max(1, heartbeats["heartbeats"]) * 1e6),
        "heartbeat": heartbeats,
        "overview_http_under_load": overview,
        "overview_page_chromium": browser,
    }


async def main_async(options: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "gateways": options.gateways,
        "interval_s": options.interval,
        "seconds": options.seconds,
        "cpus": os.cpu_count(),
        "workers": options.workers,
    }
    port = free_port()
    bare = await asyncio.to_thread(
        start_process, [sys.executable, "-c", BARE_SERVER, str(port)], port
    )
    try:
        cpu_before, wall_before = process_tree_cpu(bare.pid), time.perf_counter()
        fleet = [(f"gw-{n:05d}", "k") for n in range(options.gateways)]
        baseline = await play_fleet(
            f"http://127.0.0.1:{port}", fleet, options.interval, options.bare_seconds
        )
        baseline["cpu_percent"] = round(
            (process_tree_cpu(bare.pid) - cpu_before) / (time.perf_counter() - wall_before) * 100, 1
        )
    finally:
        await asyncio.to_thread(stop_process, bare)
    report["bare_aiohttp"] = baseline
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        if "sqlite" in options.backends:
            report["sqlite"] = await bench_backend(
                "sqlite", f"sqlite:///{Path(tmp) / 'c.db'}", options
            )
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
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=30.0, help="heartbeat period (s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured run per backend")
    parser.add_argument("--bare-seconds", type=float, default=10.0, help="bare handler's run")
    parser.add_argument("--backends", default="sqlite", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=1, help="central processes")
    parser.add_argument("--no-browser", dest="browser", action="store_false")
    options = parser.parse_args(argv)
    options.backends = options.backends.split(",")
    random.seed(1)
    print(json.dumps(asyncio.run(main_async(options)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

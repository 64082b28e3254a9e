"""Benchmark: identify throughput and p99 at 64 connections, SQLite and PostgreSQL.

For each backend the script builds a chain of ``--members`` members (default 1 000 000) with
``gatewayd central seed``'s bulk loader, starts ``gatewayd central`` in a subprocess, and
drives ``POST /v1/identify`` (member codes, a fresh ``event_id`` each, as gateways send them)
over 64 keep-alive connections for ``--seconds``. In the same run a bare aiohttp handler
that returns a constant is measured with the same client: the framework's ceiling on this
machine. Before central, each backend's floor is measured too (``identify_floor.py``: one
look-up and one recorded insert through central's hot path, and nothing else), so the
report shows how much of the distance to the ceiling is the database's and how much is
central's own. PostgreSQL is a throwaway cluster the script starts and removes itself.

The client is ``wrk`` when it is installed (``apt-get install wrk``): one C thread in its
own process, so the servers, not the client, are what is measured. Without it a Python
client (aiohttp, one session, 64 connections) runs in this process; it tops out at a few
thousand requests a second, which then caps the bare handler too (the report says which
client ran). Each server is measured twice:

* saturated: every connection sends its next request as soon as the answer is in. That is
  the capacity (``rps``); with 64 requests always waiting, latency is then mostly queueing
  (p50 ≈ 64 / rps), whatever the server does per request;
* paced: the same 64 connections offering ``--paced-rate`` requests a second in total
  (random gaps), the latency a till sees on a busy but not overloaded server.

``server_cpu_us`` is the server processes' CPU time per request (user + system, from
``/proc``), a figure that other load on the machine disturbs less than throughput.

    .venv/bin/python benchmarks/central.py --members 20000 --seconds 3   # quick
    .venv/bin/python benchmarks/central.py                               # the full run

Prints one JSON document; ``ratio`` is central's throughput over the bare handler's (and
``floor.ratio`` the floor's), ``cpu_ratio`` the same with CPU time per request. The bare
handler is measured first and again after each backend, and each backend is compared with
the mean of the two measurements around it (all are listed in ``bare_aiohttp_runs``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
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
FLOOR_SCRIPT = Path(__file__).with_name("identify_floor.py")
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
# wrk's script: the request list comes first (generated), then this. Event ids are unique
# per run label, thread and request. Paced runs add PACED (exponential gaps).
WRK_SCRIPT = """
local label, mean_delay = "run", 0
local thread_no, n = 0, 0
function setup(thread)
  thread_no = thread_no + 1
  thread:set("thread_no", thread_no)
end
function init(args)
  label = args[1] or "run"
  mean_delay = tonumber(args[2] or "0")
  math.randomseed(os.time() + (thread_no or 0))
end
function request()
  n = n + 1
  local r = requests[(n % #requests) + 1]
  local body = r[1] .. ', "event_id": "' .. label .. "-" .. (thread_no or 0) .. "-" .. n .. '"}'
  return wrk.format("POST", nil, {["Authorization"] = r[2],
                                  ["Content-Type"] = "application/json"}, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""
PACED = """
function delay()
  return -mean_delay * math.log(1 - math.random())
end
"""


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its children, alive now (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


class Client:
    """Drives one server; ``run`` measures for ``seconds`` and returns the figures."""

    def __init__(
        self, url: str, requests: list[tuple[dict[str, Any], str]], connections: int, tmp: Path
    ) -> None:
        self.url = url
        self.requests = requests
        self.connections = connections
        self.tmp = tmp
        self.runs = 0
        self.prefix = "b"  # event ids: unique per client, run, connection and request

    async def run(self, seconds: float, rate: float | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def _label(self) -> str:
        self.runs += 1
        return f"{self.prefix}{os.getpid()}x{int(time.time())}r{self.runs}"


class WrkClient(Client):
    name = "wrk"

    def _script(self, paced: bool) -> Path:
        script = self.tmp / f"identify-{abs(hash(self.url))}-{int(paced)}.lua"
        if not script.exists():
            lines = ["requests = {"]
            for payload, key in self.requests:
                head = json.dumps(payload)[:-1]  # the body without its closing brace
                lines.append(f"  {{{json.dumps(head)}, {json.dumps('Bearer ' + key)}}},")
            lines.append("}")
            script.write_text("\n".join(lines) + WRK_SCRIPT + (PACED if paced else ""))
        return script

    async def run(self, seconds: float, rate: float | None = None) -> dict[str, Any]:
        mean_delay_ms = self.connections / rate * 1000 if rate else 0
        command = [
            "wrk", "-t1", f"-c{self.connections}", f"-d{max(1, round(seconds))}s",
            "--latency", "-s", str(self._script(bool(rate))), self.url, "--",
            self._label(), f"{mean_delay_ms:.3f}",
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
        for line in out.decode().splitlines():
            if line.startswith("BENCH_JSON "):
                data = json.loads(line.removeprefix("BENCH_JSON "))
                break
        else:
            raise RuntimeError(f"wrk failed: {err.decode()[-500:]}")
        elapsed = data["duration_us"] / 1e6
        return {
            "requests": data["requests"],
            "rps": round(data["requests"] / elapsed, 1),
            "p50_ms": round(data["p50_us"] / 1000, 2),
            "p99_ms": round(data["p99_us"] / 1000, 2),
            "non_2xx": data["non_2xx"],
            "socket_errors": data["socket_errors"],
        }


class PythonClient(Client):
    name = "python-aiohttp"

    async def run(self, seconds: float, rate: float | None = None) -> dict[str, Any]:
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        label = self._label()
        counter = iter(range(10**12))
        mean_gap = self.connections / rate if rate else 0.0
        bodies = [
            (json.dumps(payload)[:-1], {"Authorization": f"Bearer {key}"})
            for payload, key in self.requests
        ]
        connector = aiohttp.TCPConnector(limit=self.connections)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def client(deadline: float) -> None:
                while time.perf_counter() < deadline:
                    n = next(counter)
                    head, headers = bodies[n % len(bodies)]
                    data = f'{head}, "event_id": "{label}-{n}"}}'.encode()
                    started = time.perf_counter()
                    async with http.post(
                        self.url,
                        data=data,
                        headers={**headers, "Content-Type": "application/json"},
                    ) as resp:
                        await resp.read()
                    latencies.append(time.perf_counter() - started)
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    if mean_gap:
                        await asyncio.sleep(random.expovariate(1 / mean_gap))

            started = time.perf_counter()
            end = started + seconds
            await asyncio.gather(*(client(end) for _ in range(self.connections)))
            elapsed = time.perf_counter() - started
        return {
            "requests": len(latencies),
            "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2),
            "non_2xx": sum(n for status, n in statuses.items() if not 200 <= status < 300),
            "socket_errors": 0,
        }


async def measure(client: Client, pid: int, options: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then the saturated and the paced measurement of one server."""
    await client.run(1.0)
    cpu_before = await asyncio.to_thread(process_tree_cpu, pid)
    result = await client.run(options.seconds)
    cpu = await asyncio.to_thread(process_tree_cpu, pid) - cpu_before
    result["server_cpu_us"] = round(cpu / max(1, result["requests"]) * 1e6, 1)
    if options.paced_rate > 0:
        paced = await client.run(options.seconds, rate=options.paced_rate)
        result["paced"] = {
            "offered_rps": options.paced_rate,
            **{k: paced[k] for k in ("rps", "p50_ms", "p99_ms", "non_2xx")},
        }
    return result


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
        # What a database in service has: statistics, and (PostgreSQL) the bulk load vacuumed,
        # so that autovacuum does not start on a million fresh rows in the middle of a run.
        async with db.read() as conn:
            statement = "VACUUM ANALYZE" if db.dialect == "postgresql" else "ANALYZE"
            await conn.execute(sa.text(statement))
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
    random.shuffle(requests)
    return seeded, requests


def make_client(
    options: argparse.Namespace, url: str, requests: list[tuple[dict[str, Any], str]], tmp: Path
) -> Client:
    kind = WrkClient if options.client == "wrk" else PythonClient
    return kind(url, requests, options.connections, tmp)


async def bench_backend(
    name: str, db_url: str, options: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    seeded, requests = await prepare(db_url, options.members)
    floor = None
    if options.floor:
        port = free_port()
        server = await asyncio.to_thread(
            start_process, [sys.executable, str(FLOOR_SCRIPT), db_url, str(port)], port
        )
        try:
            client = make_client(options, f"http://127.0.0.1:{port}/v1/identify", requests, tmp)
            client.prefix = "f"
            floor = await measure(client, server.pid, options)
        finally:
            await asyncio.to_thread(stop_process, server)
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
        client = make_client(options, f"http://127.0.0.1:{port}/v1/identify", requests, tmp)
        result = await measure(client, server.pid, options)
    finally:
        await asyncio.to_thread(stop_process, server)
    report = {"backend": name, "seed_seconds": round(seeded, 1), **result}
    if floor is not None:
        report["floor"] = floor
    return report


async def measure_bare(options: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The ceiling: a bare aiohttp handler returning a constant, measured like the others."""
    port = free_port()
    bare = await asyncio.to_thread(
        start_process, [sys.executable, "-c", BARE_SERVER, str(port)], port
    )
    try:
        client = make_client(
            options,
            f"http://127.0.0.1:{port}/v1/identify",
            [({"token": "x", "store": "s", "terminal": "t"}, "k")],
            tmp,
        )
        return await measure(client, bare.pid, options)
    finally:
        await asyncio.to_thread(stop_process, bare)


def compare(result: dict[str, Any], bare_runs: list[dict[str, Any]]) -> None:
    """Set ``ratio`` (throughput over the ceiling's) on a backend's result and its floor's,
    against the mean of the ceiling measured just before and just after; ``cpu_ratio`` is
    the same with CPU time per request (the ceiling's over theirs)."""
    rps = statistics.mean(run["rps"] for run in bare_runs)
    cpu = statistics.mean(run["server_cpu_us"] for run in bare_runs)
    for measured in (result, result.get("floor")):
        if measured is None or not rps:
            continue
        measured["ratio"] = round(measured["rps"] / rps, 3)
        if measured.get("server_cpu_us"):
            measured["cpu_ratio"] = round(cpu / measured["server_cpu_us"], 3)


async def main_async(options: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "members": options.members,
        "connections": options.connections,
        "seconds": options.seconds,
        "workers": options.workers,
        "cpus": os.cpu_count(),
        "client": options.client,
    }
    with tempfile.TemporaryDirectory(prefix="central-bench-") as tmp_name:
        tmp = Path(tmp_name)
        # The ceiling is measured before and again after each backend, and each backend is
        # compared with the mean of the two around it: on a shared machine the speed drifts
        # within minutes, and a ceiling from the start alone flattered or wronged the rest.
        bare_runs = [await measure_bare(options, tmp)]
        if "sqlite" in options.backends:
            url = f"sqlite:///{tmp / 'central.db'}"
            report["sqlite"] = await bench_backend("sqlite", url, options, tmp)
            bare_runs.append(await measure_bare(options, tmp))
            compare(report["sqlite"], bare_runs[-2:])
        if "postgresql" in options.backends:
            cluster = ThrowawayPostgres()
            await asyncio.to_thread(cluster.start)
            try:
                await asyncio.to_thread(cluster.create_database, "central")
                report["postgresql"] = await bench_backend(
                    "postgresql", cluster.url("central"), options, tmp
                )
            finally:
                await asyncio.to_thread(cluster.stop)
            bare_runs.append(await measure_bare(options, tmp))
            compare(report["postgresql"], bare_runs[-2:])
    report["bare_aiohttp"] = bare_runs[0]
    report["bare_aiohttp_runs"] = [
        {k: run[k] for k in ("rps", "server_cpu_us")} for run in bare_runs
    ]
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
    parser.add_argument(
        "--client",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator (default: wrk when installed)",
    )
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the floor (benchmarks/identify_floor.py: look-up and insert, nothing else)",
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=2000.0,
        help="requests/s offered in the paced run (0: skip it)",
    )
    options = parser.parse_args(argv)
    options.backends = set(options.backends.split(","))
    logs.configure("warning")  # stdout carries only the JSON report
    report = asyncio.run(main_async(options))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

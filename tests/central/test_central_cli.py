"""The command line as an operator runs it: migrate, keys, seed, serve with --workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gatewayd.central.migrate import head_revision
from gatewayd.central.testing import ThrowawayPostgres, free_port, wait_for_port

SECRET_ENV = {"GATEWAYD_CENTRAL_SECRET": "cli-test-secret"}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **SECRET_ENV, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gatewayd.central", "central", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )


def test_migrate_admin_key_and_seed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = run_cli("--db", url, "migrate")
    assert result.returncode == 0, result.stderr
    assert f"database at revision {head_revision()}" in result.stdout
    result = run_cli("migrate", "--db", url)  # options after the sub-command work too
    assert result.returncode == 0
    result = run_cli("admin-key", "create", "--db", url, "--name", "ops")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("cka_") and len(result.stdout.split()) == 1
    keys = tmp_path / "keys.json"
    result = run_cli("seed", "--demo", "--members", "30", "--db", url, "--keys-out", str(keys))
    assert result.returncode == 0, result.stderr
    data = json.loads(keys.read_text())
    assert data["members"] == 30 and len(data["gateways"]) == 3
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    assert data["admin_key"] not in result.stdout  # keys went to the file only
    result = run_cli("seed", "--demo", "--db", url)
    assert result.returncode == 1 and "already" in result.stderr


def test_configuration_errors_exit_2(tmp_path: Path) -> None:
    result = run_cli("--db", f"sqlite:///{tmp_path / 'x.db'}", env={"GATEWAYD_CENTRAL_SECRET": ""})
    assert result.returncode == 2 and "no secret" in result.stderr
    result = run_cli("seed", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 2 and "--demo" in result.stderr
    result = run_cli("--listen", "nonsense", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 2 and "listen" in result.stderr
    result = run_cli("admin-key")
    assert result.returncode == 2 and "usage" in result.stderr
    bare = subprocess.run(
        [sys.executable, "-m", "gatewayd.central"], capture_output=True, text=True, timeout=60
    )
    assert bare.returncode == 2 and "usage" in bare.stderr


@pytest.fixture
def pg_demo(pg_cluster: ThrowawayPostgres, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    url = pg_cluster.create_database(f"cli_{os.getpid()}_{time.monotonic_ns()}")
    keys = tmp_path / "keys.json"
    result = run_cli("seed", "--demo", "--members", "40", "--db", url, "--keys-out", str(keys))
    assert result.returncode == 0, result.stderr
    return url, json.loads(keys.read_text())


async def test_two_workers_on_postgresql_both_serve_identify(
    pg_demo: tuple[str, dict[str, Any]],
) -> None:
    url, keys = pg_demo
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gatewayd.central",
            "central",
            "--db",
            url,
            "--listen",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--identify-rate",
            "1000",
            "--identify-burst",
            "1000",
            "--log-level",
            "warning",
        ],
        env={**os.environ, **SECRET_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        gateway = keys["gateways"]["gw-1"]
        payload = {
            "token": keys["samples"]["member_codes"][0],
            "store": gateway["store"],
            "terminal": "pos-1",
        }
        pids: set[str] = set()
        answers: set[int] = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            # A new connection each time: the kernel spreads connections, not requests.
            connector = aiohttp.TCPConnector(force_close=True)
            async with (
                aiohttp.ClientSession(connector=connector) as http,
                http.post(
                    f"http://127.0.0.1:{port}/v1/identify",
                    json=payload,
                    headers={"Authorization": f"Bearer {gateway['api_key']}"},
                ) as resp,
            ):
                if resp.status == 200:
                    pids.add(resp.headers["X-Central-Worker"])
                    answers.add((await resp.json())["member"]["id"])
        assert len(pids) == 2, pids
        assert str(proc.pid) not in pids  # the parent only supervises
        assert answers == {1}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, proc.stderr.read().decode() if proc.stderr else ""

"""Central's /metrics: authenticated, labelled by route template, summed over workers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from gatewayd.central.metrics import METRICS_FOLD_SECONDS, CentralMetrics
from gatewayd.central.testing import free_port, wait_for_port

SECRET = "test-secret-not-for-production"  # as tests/central/conftest.py


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def scrape(central: Any, token: str | None = "admin") -> tuple[int, str]:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {central.admin_key if token == 'admin' else token}"
    async with central.http.get(central.url + "/metrics", headers=headers) as resp:
        return resp.status, await resp.text()


async def test_metrics_count_identifications_and_requests_by_template(central: Any) -> None:
    member = await central.member()
    code = member["cards"][0]["member_code"]
    for _ in range(3):
        assert (await central.identify(code))[0] == 200
    assert (await central.identify("96000000000000000000"))[0] == 422  # bad check digit
    await central.ok("GET", f"/v1/members/{member['id']}")
    await central.call("GET", "/v1/nowhere/12345678")
    await central.call("PUT", "/v1/identify")  # 405: another method is served there
    async with central.http.get(central.url + "/portal/static/common.js") as resp:
        assert resp.status == 200

    status, text = await scrape(central)
    assert status == 200
    assert sample(
        text, "central_identifications_total", kind="member_code", via="barcode", status="200"
    ) == 3.0
    assert sample(text, "central_identify_duration_seconds_count", kind="member_code") == 3.0
    assert sample(
        text, "central_identifications_total", kind="unknown", via="barcode", status="422"
    ) == 1.0
    assert sample(
        text,
        "central_http_request_duration_seconds_count",
        route="/v1/identify",
        method="POST",
        status="200",
    ) == 3.0
    assert sample(
        text,
        "central_http_request_duration_seconds_count",
        route="/v1/members/{member_id}",
        method="GET",
        status="200",
    ) == 1.0
    assert sample(
        text, "central_http_request_duration_seconds_count", route="unmatched", status="404"
    ) == 1.0
    assert sample(
        text, "central_http_request_duration_seconds_count", route="unmatched", status="405"
    ) == 1.0
    assert sample(
        text,
        "central_http_request_duration_seconds_count",
        route="/portal/static/{name}",
        status="200",
    ) == 1.0
    # Raw paths never become labels: no member id, no card number, no unknown path.
    assert f"/v1/members/{member['id']}\"" not in text and "12345678" not in text
    assert code not in text
    # Gateways by state, from the database: two registered, none has sent a heartbeat.
    assert sample(text, "central_gateways", state="never_seen") == 2.0


async def test_metrics_need_an_admin_key_or_the_scrape_token(central_with: Any) -> None:
    central = await central_with(metrics_token="scrape-token-123")
    assert (await scrape(central, None))[0] == 401
    assert (await scrape(central, "wrong-token"))[0] == 401
    assert (await scrape(central, central.gateway_keys["gw-1"]))[0] == 403
    status, text = await scrape(central, "scrape-token-123")
    assert status == 200 and "central_http_request_duration_seconds" in text
    assert (await scrape(central))[0] == 200


async def test_two_workers_report_the_sum_of_both(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    keys_file = tmp_path / "keys.json"
    env = {**os.environ, "GATEWAYD_CENTRAL_SECRET": SECRET}
    seeded = subprocess.run(
        [sys.executable, "-m", "gatewayd.central", "central", "seed", "--members", "50",
         "--db", url, "--keys-out", str(keys_file)],
        env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    keys = json.loads(keys_file.read_text())
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gatewayd.central", "central", "--db", url,
         "--listen", f"127.0.0.1:{port}", "--workers", "2", "--identify-rate", "100000",
         "--identify-burst", "100000", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30)
        gateway = keys["gateways"]["gw-1"]
        codes = keys["samples"]["member_codes"]
        workers: set[str] = set()
        requests = 0
        # A new connection per request: the kernel spreads them over both workers.
        # The second worker may still be starting when the first one listens: allow time.
        deadline = asyncio.get_running_loop().time() + 60
        while requests < 60 or len(workers) < 2:
            assert asyncio.get_running_loop().time() < deadline, f"only {workers} answered"
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"http://127.0.0.1:{port}/v1/identify",
                    json={"token": codes[requests % len(codes)], "store": gateway["store"],
                          "terminal": "pos-1"},
                    headers={"Authorization": f"Bearer {gateway['api_key']}"},
                ) as resp:  # fmt: skip
                    assert resp.status == 200, await resp.text()
                    workers.add(resp.headers["X-Central-Worker"])
            requests += 1
        answered_by: set[str] = set()
        scrapes = 0
        # Each worker folds its tallies into the shared files every second: from then on,
        # every scrape, whichever worker answers, sees all requests.
        await asyncio.sleep(METRICS_FOLD_SECONDS + 0.5)
        while scrapes < 6 or len(answered_by) < 2:
            assert scrapes < 100, "one worker answered every scrape"
            async with aiohttp.ClientSession() as http:
                async with http.get(
                    f"http://127.0.0.1:{port}/metrics",
                    headers={"Authorization": f"Bearer {keys['admin_key']}"},
                ) as resp:
                    assert resp.status == 200
                    answered_by.add(resp.headers["X-Central-Worker"])
                    text = await resp.text()
            scrapes += 1
            total = sample(
                text,
                "central_identifications_total",
                kind="member_code",
                via="barcode",
                status="200",
            )
            assert total == float(requests)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_tallies_fold_into_what_observing_would_give() -> None:
    """Bucket edges included: a value equal to a bound counts in that bound's bucket."""
    values = [0.0, 0.0005, 0.0007, 0.001, 0.003, 0.25, 5.0, 7.5, 0.0001]
    tallied, observed = CentralMetrics(), CentralMetrics()
    for value in values:
        tallied.request("/v1/identify", "POST", 200, value)
        tallied.identified("member_code", "barcode", 200, value)
        observed.http_duration.labels("/v1/identify", "POST", "200").observe(value)
        observed.identify_duration.labels("member_code").observe(value)
        observed.identifications.labels("member_code", "barcode", "200").inc()
    tallied.request("/v1/identify", "POST", 422, 0.002)
    observed.http_duration.labels("/v1/identify", "POST", "422").observe(0.002)

    def lines(metrics: CentralMetrics) -> list[str]:
        text = metrics.exposition().decode()
        return [line for line in text.splitlines() if "_created" not in line]

    assert lines(tallied) == lines(observed)
    # Cumulative, as prometheus counts: 0, 0.0001, 0.0005, 0.0007 and 0.001 itself.
    assert 'central_identify_duration_seconds_bucket{kind="member_code",le="0.001"} 5.0' in lines(
        tallied
    )
    # Folding empties the tallies: a second scrape adds nothing twice.
    assert lines(tallied) == lines(observed)

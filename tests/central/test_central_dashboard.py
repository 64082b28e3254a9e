"""The HQ dashboard end to end: a real central on a socket, a real gatewayd heartbeating
through its outbox, HTTP heartbeats for a second gateway, and headless Chromium.

Central runs in-process on a real socket with a manual clock, so "gw-2 goes stale" is a clock
step rather than a 90 s wait; the live stream still polls the database every real second.
Screenshots land in tests/artifacts/screenshots/ (copies in docs/screenshots/dashboard-*.png).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from playwright.async_api import Page, expect

from gatewayd import __version__
from gatewayd.central.admin_users import add_admin_user
from gatewayd.central.clock import ManualClock
from gatewayd.central.config import CentralSettings
from gatewayd.central.dashboard import MAX_DEVICES, MAX_ERRORS, MAX_MESSAGE, report_from_payload
from gatewayd.central.db import Database
from gatewayd.central.errors import NotFound
from gatewayd.central.migrate import upgrade
from gatewayd.central.schemas import DeviceStatus, Heartbeat
from gatewayd.simulate import PtyDevice
from tests.central.conftest import SECRET, Central, start_central
from tests.support.broker import Mosquitto
from tests.support.browser import page as browser_page
from tests.support.browser import screenshot
from tests.support.gateway import GatewayProcess, write_config

PASSWORD = "correct horse battery"


@pytest.fixture
async def hq(tmp_path: Path) -> AsyncIterator[Central]:
    """Central over SQLite with two stores, gw-1 and gw-2, and an admin user "boss"."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    db = Database.from_url(url)
    try:
        await upgrade(db)
    finally:
        await db.close()
    settings = CentralSettings(db=url, secret=SECRET, alert_interval=0)
    running, stop = await start_central(settings, ManualClock(time.time()))
    await add_admin_user(running.services.db, running.clock, "boss", PASSWORD)
    yield running
    await stop()


@pytest.fixture
def real_gateway(
    tmp_path: Path, broker: Mosquitto, hq: Central, gateways: list[GatewayProcess]
) -> GatewayProcess:
    """gw-1 as a real gatewayd: a working scanner and one whose port does not exist.

    The working scanner reads a member code (an identification) and an oversized line (a
    rejected input: a warning in the gateway's log, so in its recent errors)."""
    scanner = PtyDevice(tmp_path / "scanner")
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        gateway_id="gw-1",
        store="store-1",
        extra={"central": {"url": hq.url, "key": hq.gateway_keys["gw-1"], "heartbeat_interval": 1}},
        devices=[
            {
                "id": "lane1-gun",
                "driver": "serial_scanner",
                "terminal": "pos-1",
                "port": scanner.path,
            },
            {
                "id": "lane2-gun",
                "driver": "serial_scanner",
                "terminal": "pos-2",
                "port": str(tmp_path / "unplugged-tty"),
            },
        ],
    )
    process = GatewayProcess(config)
    gateways.append(process)
    process.start()
    scanner.write(b"6901234567892\r" + b"A" * 300 + b"\r")
    return process


async def _until(check: Any, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something true; its last answer is in the error."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result, ok = await check()
        if ok:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met; last: {result}")
        await asyncio.sleep(0.2)


async def _login(page: Page, hq: Central, password: str = PASSWORD) -> None:
    await page.goto(hq.url + "/dashboard/")
    await expect(page).to_have_url(hq.url + "/dashboard/login")
    await page.fill("#name", "boss")
    await page.fill("#password", password)
    await page.click("button[type=submit]")


def _row(page: Page, gateway: str) -> Any:
    return page.locator(f'tr[data-gateway="{gateway}"]')


async def test_real_gateway_heartbeats_carry_what_the_dashboard_shows(
    hq: Central, real_gateway: GatewayProcess
) -> None:
    async def detail() -> Any:
        body = await hq.ok("GET", "/v1/dashboard/gateways/gw-1")
        states = {d["id"]: d["state"] for d in body["devices"]}
        return body, bool(body["recent_errors"]) and states.get("lane1-gun") == "online"

    gateway = await _until(detail)
    assert gateway["state"] == "online" and gateway["version"] == __version__
    assert gateway["uptime_s"] is not None and gateway["backlog"] >= 0
    states = {d["id"]: d["state"] for d in gateway["devices"]}
    assert states["lane2-gun"] in ("failed", "offline") and gateway["devices_bad"] == 1
    assert any(e["event"] == "input_rejected" for e in gateway["recent_errors"])
    assert gateway["last_identification_at"] is not None and gateway["events_total"] >= 1
    assert all(len(e.get("message", "")) <= MAX_MESSAGE for e in gateway["recent_errors"])
    assert len(gateway["history"]) >= 1
    overview = await hq.ok("GET", "/v1/dashboard/overview?problems=true")
    assert [g["id"] for g in overview["items"]] == ["gw-1"]
    assert overview["counts"]["online"] == 1 and overview["counts"]["never_seen"] == 1


async def test_dashboard_in_chromium_login_overview_live_updates_gateway_page_alerts(
    hq: Central, real_gateway: GatewayProcess
) -> None:
    async with browser_page(width=1280, height=720) as page:
        await _login(page, hq, password="not the password")
        await expect(page.locator("#message")).to_contain_text("wrong name or password")
        await expect(page).to_have_url(hq.url + "/dashboard/login")
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page).to_have_url(hq.url + "/dashboard/")
        await expect(page.locator("#who")).to_have_text("boss")
        gw1 = _row(page, "gw-1")
        await expect(gw1).to_have_attribute("data-state", "online", timeout=20_000)
        await expect(gw1).to_contain_text("lane2-gun")
        await expect(_row(page, "gw-2")).to_have_attribute("data-state", "never_seen")
        await expect(page.locator("#count-online b")).to_have_text("1")
        await expect(page.locator("#live")).to_contain_text("live", timeout=5_000)
        await page.evaluate("window.__sameDocument = true")

        # gw-2 heartbeats over HTTP: its row turns online without a reload.
        beat = {"devices": [{"id": "face-1", "state": "online"}], "version": "0.9.0"}
        await hq.ok("POST", "/v1/gateways/gw-2/heartbeat", "gw-2", beat)
        gw2 = _row(page, "gw-2")
        await expect(gw2).to_have_attribute("data-state", "online", timeout=5_000)
        await expect(page.locator("#count-online b")).to_have_text("2")
        # Its face terminal fails: the badge changes live.
        beat["devices"] = [{"id": "face-1", "state": "failed"}]
        await hq.ok("POST", "/v1/gateways/gw-2/heartbeat", "gw-2", beat)
        await expect(gw2.locator('[data-state="failed"]')).to_be_visible(timeout=5_000)
        # 100 s without a heartbeat from gw-2 (gw-1 keeps beating): stale, live.
        hq.clock.advance(100)
        await expect(gw2).to_have_attribute("data-state", "stale", timeout=5_000)
        await expect(page.locator("#count-stale b")).to_have_text("1")
        assert await page.evaluate("window.__sameDocument") is True
        await screenshot(page, "dashboard-overview")

        # A state change without the CSRF token is refused, even from the page itself.
        status = await page.evaluate(
            """async () => (await fetch('/v1/alert-rules', {method: 'POST',
                headers: {'Content-Type': 'application/json'}, body: '{}'})).status"""
        )
        assert status == 403

        # The gateway page: devices and the real gateway's recent errors.
        await page.click('a[href="/dashboard/gateway?id=gw-1"]')
        await expect(page.locator("#title")).to_contain_text("gw-1")
        await expect(page.locator("#facts")).to_contain_text(__version__)
        await expect(page.locator('#devices tr[data-device="lane2-gun"]')).to_be_visible()
        await expect(page.locator("#errors tbody")).to_contain_text("input_rejected")
        await screenshot(page, "dashboard-gateway")

        # Alerts: a rule added through the form (CSRF token from the session), then fired.
        await page.goto(hq.url + "/dashboard/alerts")
        await page.fill('#new-rule input[name="name"]', "gateway silent")
        await page.select_option('#new-rule select[name="kind"]', "gateway_offline")
        await page.fill('#new-rule input[name="threshold"]', "1")
        await page.fill('#new-rule input[name="address"]', "ops@example.com")
        await page.select_option('#new-rule select[name="channel"]', "email")
        await page.click("#new-rule button[type=submit]")
        await expect(page.locator("#rules tbody")).to_contain_text("gateway silent")
        assert (await hq.services.alerts.evaluate())["fired"] == 1
        await page.reload()
        await expect(page.locator("#incidents tbody")).to_contain_text("gw-2")
        await expect(page.locator("#incidents tbody")).to_contain_text("open")
        await screenshot(page, "dashboard-alerts")

        await page.click("#logout")
        await expect(page).to_have_url(hq.url + "/dashboard/login")
        await page.goto(hq.url + "/dashboard/")
        await expect(page).to_have_url(hq.url + "/dashboard/login")


async def test_overview_filters_search_and_pages(hq: Central) -> None:
    for n in range(3, 8):
        created = await hq.ok(
            "POST", "/v1/gateways", json={"id": f"gw-{n}", "store": "store-2", "name": f"Lane {n}"}
        )
        hq.gateway_keys[f"gw-{n}"] = created["api_key"]
        if n % 2:
            await hq.ok("POST", f"/v1/gateways/gw-{n}/heartbeat", f"gw-{n}", {})
    page1 = await hq.ok("GET", "/v1/dashboard/overview?store=store-2&per_page=2")
    page3 = await hq.ok("GET", "/v1/dashboard/overview?store=store-2&per_page=2&page=3")
    assert page1["matching"] == 6 and [g["id"] for g in page1["items"]] == ["gw-2", "gw-3"]
    assert [g["id"] for g in page3["items"]] == ["gw-6", "gw-7"]
    online = await hq.ok("GET", "/v1/dashboard/overview?state=online")
    assert {g["id"] for g in online["items"]} == {"gw-3", "gw-5", "gw-7"}
    assert online["counts"] == {
        "online": 3,
        "stale": 0,
        "offline": 0,
        "never_seen": 4,
        "total": 7,
        "devices_bad": 0,
    }
    found = await hq.ok("GET", "/v1/dashboard/overview?q=LANE%205")
    assert [g["id"] for g in found["items"]] == ["gw-5"]
    assert (await hq.ok("GET", "/v1/dashboard/overview?q=%25"))["matching"] == 0  # no wildcards
    hq.clock.advance(700)
    offline = await hq.ok("GET", "/v1/dashboard/overview?state=offline")
    assert offline["matching"] == 3
    for bad in ("state=asleep", "per_page=0", "per_page=201", "page=x", "store=%20", "x=1"):
        status, body, _ = await hq.call("GET", f"/v1/dashboard/overview?{bad}")
        assert (status, body["error"]["code"]) == (422, "invalid_request"), bad


async def test_stream_sends_changes_including_gateways_that_age_into_stale(hq: Central) -> None:
    await hq.ok("POST", "/v1/gateways/gw-1/heartbeat", "gw-1", {})
    headers = {"Authorization": f"Bearer {hq.admin_key}"}
    async with hq.http.get(hq.url + "/v1/dashboard/stream", headers=headers) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"

        async def next_event() -> dict[str, Any]:
            while True:
                line = (await asyncio.wait_for(resp.content.readline(), 5)).decode()
                if line.startswith("data: "):
                    return dict(json.loads(line[6:]))

        first = await next_event()
        assert first["changed"] == [] and first["counts"]["online"] == 1
        hq.clock.advance(91)
        aged = await next_event()
        assert [(g["id"], g["state"]) for g in aged["changed"]] == [("gw-1", "stale")]
        assert (await next_event())["changed"] == []  # sent once, not on every tick
    one = hq.url + "/v1/dashboard/stream?gateway=gw-2"
    async with hq.http.get(one, headers=headers) as resp:

        async def next_one() -> dict[str, Any]:
            while True:
                line = (await asyncio.wait_for(resp.content.readline(), 5)).decode()
                if line.startswith("data: "):
                    return dict(json.loads(line[6:]))

        assert (await next_one())["changed"] == []
        await hq.ok("POST", "/v1/gateways/gw-1/heartbeat", "gw-1", {})  # another gateway
        await hq.ok("POST", "/v1/gateways/gw-2/heartbeat", "gw-2", {})
        seen = [g["id"] for _ in range(3) for g in (await next_one())["changed"]]
        assert seen == ["gw-2"]
    status, _, _ = await hq.call("GET", "/v1/dashboard/stream", key=None)
    assert status == 401


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=300),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(
    payload=st.fixed_dictionaries(
        {},
        optional={
            "devices": _json | st.dictionaries(st.text(max_size=200), _json, max_size=300),
            "counters": _json | st.dictionaries(st.text(max_size=10), st.integers(), max_size=10),
            "outbox": _json,
            "uptime": _json,
            "version": _json,
            "last_identification": _json,
            "errors": _json | st.lists(_json, max_size=40),
        },
    )
)
def test_any_heartbeat_payload_gives_a_bounded_report(payload: dict[str, Any]) -> None:
    report = report_from_payload(payload)
    assert len(report.devices) <= MAX_DEVICES and len(report.errors) <= MAX_ERRORS
    assert all(len(d["id"]) <= 128 and len(d["state"]) <= 16 for d in report.devices)
    assert all(len(e.get("message", "")) <= MAX_MESSAGE for e in report.errors)
    assert report.version is None or len(report.version) <= 64
    assert report.backlog >= 0 and report.events_total >= 0
    json.dumps(report.errors)  # storable as the JSON column


async def test_concurrent_heartbeats_are_written_in_batches_and_none_is_lost(
    central: Central,
) -> None:
    """Both backends: 40 gateways beating twice at once, plus one unknown gateway."""
    for n in range(3, 43):
        await central.ok(
            "POST", "/v1/gateways", json={"id": f"gw-{n}", "store": "store-1", "name": f"G{n}"}
        )
    registry = central.services.registry
    ids = [f"gw-{n}" for n in range(1, 43)]
    beats = [
        registry.record_heartbeat(g, Heartbeat(devices=[DeviceStatus(id="gun", state=state)]))
        for state in ("online", "failed")
        for g in ids
    ]
    results = await asyncio.gather(
        *beats, registry.record_heartbeat("gw-nope", Heartbeat()), return_exceptions=True
    )
    assert results[:-1] == [None] * len(beats)
    assert isinstance(results[-1], NotFound)
    overview = await central.ok("GET", "/v1/dashboard/overview?per_page=200")
    assert overview["counts"]["online"] == 42 and overview["counts"]["devices_bad"] == 42
    detail = await central.ok("GET", "/v1/dashboard/gateways/gw-17")
    assert len(detail["history"]) == 2 and detail["devices"][0]["state"] == "failed"

"""The payment-code window and the checkout setting, with a fake WeChat Pay behind central."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gatewayd.central.testing import FakeWeChatPay
from tests.link.conftest import SECRET
from tests.support.broker import Mosquitto
from tests.support.central import CentralProcess
from tests.support.mqtt import subscribed
from tests.support.net import free_port

CODE = "134567890123456789"
OPENID = "o-wechat-member-1"
IDENTIFY = "gatewayd/v1/store-1/terminals/+/identify"


@pytest.fixture
def wechat() -> Iterator[tuple[FakeWeChatPay, str]]:
    fake = FakeWeChatPay(openids={CODE: OPENID})
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app())

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def pay_central(tmp_path: Path, seeded, wechat) -> Iterator[CentralProcess]:
    fake, url = wechat
    template, keys = seeded
    workdir = tmp_path / "central"
    workdir.mkdir()
    env = {
        "GATEWAYD_CENTRAL_WECHAT_BASE_URL": url,
        "GATEWAYD_CENTRAL_WECHAT_APPID": fake.appid,
        "GATEWAYD_CENTRAL_WECHAT_MCH_ID": fake.mch_id,
        "GATEWAYD_CENTRAL_WECHAT_API_KEY": fake.api_key,
    }
    process = CentralProcess(workdir, template, keys, SECRET, env=env).start()
    process.admin(
        "POST", "/v1/members/1/payment-accounts", {"provider": "wechat", "account_id": OPENID}
    )
    yield process
    process.stop()


async def resolved(sub: Any) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            event = (await sub.get()).json()
            if event["phase"] != "detected":
                return event


async def test_payment_code_is_held_claimed_once_by_its_terminal(
    tmp_path: Path, broker: Mosquitto, pay_central: CentralProcess, linked
) -> None:
    gateway = linked(url=pay_central.url)
    gateway.process.start()
    base = gateway.process.base_url
    async with subscribed(broker.port, IDENTIFY) as sub, aiohttp.ClientSession(base) as http:
        await asyncio.sleep(0.3)
        gateway.scanner.write(f"{CODE}\r".encode())  # before goods: identifies the member
        event = await resolved(sub)
        assert event["phase"] == "resolved" and event["member"]["id"] == 1
        async with http.post("/v1/terminals/pos-2/payment-code/claim") as other:
            assert other.status == 404  # another terminal cannot take it
        async with http.post("/v1/terminals/pos-1/payment-code/claim") as claim:
            assert claim.status == 200
            held = await claim.json()
        assert held["code"] == CODE and held["kind"] == "wechat_payment_code"
        assert held["event_id"] == event["event_id"] and held["member"]["id"] == 1
        assert 0 < held["expires_in"] <= 300
        async with http.post("/v1/terminals/pos-1/payment-code/claim") as again:
            assert again.status == 404  # gone after one claim
    gateway.process.stop()
    log = gateway.process.log()
    assert CODE not in log  # never logged in full
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert CODE.encode() not in path.read_bytes(), path  # nor written to disk


async def test_window_expires(
    broker: Mosquitto, pay_central: CentralProcess, linked, tmp_path: Path
) -> None:
    gateway = linked(url=pay_central.url)
    text = gateway.config.read_text()
    gateway.config.write_text(text + '[[terminals]]\nid = "pos-1"\npayment_window_seconds = 1\n')
    gateway.process.start()
    async with (
        subscribed(broker.port, IDENTIFY) as sub,
        aiohttp.ClientSession(gateway.process.base_url) as http,
    ):
        await asyncio.sleep(0.3)
        gateway.scanner.write(f"{CODE}\r".encode())
        assert (await resolved(sub))["phase"] == "resolved"
        await asyncio.sleep(1.2)
        async with http.post("/v1/terminals/pos-1/payment-code/claim") as claim:
            assert claim.status == 404


@pytest.mark.parametrize("identify_setting", [True, False])
async def test_checkout_setting_for_codes_scanned_after_goods(
    broker: Mosquitto, pay_central: CentralProcess, linked, identify_setting: bool
) -> None:
    gateway = linked(url=pay_central.url)
    text = gateway.config.read_text()
    setting = "true" if identify_setting else "false"
    gateway.config.write_text(
        text + f'[[terminals]]\nid = "pos-1"\nidentify_on_payment_code = {setting}\n'
    )
    gateway.process.start()
    async with (
        subscribed(broker.port, IDENTIFY) as sub,
        aiohttp.ClientSession(gateway.process.base_url) as http,
    ):
        async with http.put(
            "/v1/terminals/pos-1/checkout", json={"goods_entered": True}
        ) as response:
            assert response.status == 200
        await asyncio.sleep(0.3)
        gateway.scanner.write(f"{CODE}\r".encode())
        detected = (await sub.get()).json()
        assert detected["phase"] == "detected"  # the POS takes the payment from this
        later = await sub.drain(2.0)
        async with http.post("/v1/terminals/pos-1/payment-code/claim") as claim:
            assert claim.status == 404  # nothing held once goods are entered
    phases = [m.json()["phase"] for m in later]
    if identify_setting:
        assert phases == ["resolved"]
    else:
        assert phases == []  # only paid: no identification at central
        assert pay_central.recorded([detected["event_id"]]) == {detected["event_id"]: 0}

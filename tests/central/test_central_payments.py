"""Payment codes → members through a local fake WeChat Pay (real XML, signature checked)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from gatewayd.central.errors import Expired, Invalid, UpstreamError
from gatewayd.central.models import identifications
from gatewayd.central.payments import WeChatPayAdapter, from_xml, to_xml, wechat_sign
from gatewayd.central.testing import FakeWeChatPay, start_app

WECHAT_CODE = "134567890123456789"
ALIPAY_CODE = "285678901234567890"


def test_wechat_sign_matches_the_documented_algorithm() -> None:
    # The example from the WeChat Pay v2 signature guide.
    params = {
        "appid": "wxd930ea5d5a258f4f",
        "mch_id": "10000100",
        "device_info": "1000",
        "body": "test",
        "nonce_str": "ibuaiVcKdpRxkhJA",
    }
    assert wechat_sign(params, "192006250b4c09247ec02edce69f6a2d") == (
        "9A0A8659F005D6984697E2CA0A9CF3B7"
    )
    assert wechat_sign(
        {**params, "sign": "X", "empty": ""}, "192006250b4c09247ec02edce69f6a2d"
    ) == ("9A0A8659F005D6984697E2CA0A9CF3B7")


def test_xml_round_trip_and_dtd_refused() -> None:
    assert from_xml(to_xml({"a": "1 & <2>", "b": ""})) == {"a": "1 & <2>", "b": ""}
    with pytest.raises(ValueError):
        from_xml(b'<!DOCTYPE x [<!ENTITY a "b">]><xml><a>&a;</a></xml>')


async def test_wechat_payment_code_resolves_the_bound_member(central: Any) -> None:
    member = await central.member(name="Payer")
    card = member["cards"][0]
    binding = await central.ok(
        "POST",
        f"/v1/members/{member['id']}/payment-accounts",
        json={"provider": "wechat", "account_id": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    )
    assert binding["card_id"] == card["id"]
    central.wechat.openids[WECHAT_CODE] = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    for method in ("barcode", "face", "palm"):
        status, body = await central.identify(WECHAT_CODE, method=method)
        assert status == 200, body
        assert body["member"]["id"] == member["id"] and body["card"]["id"] == card["id"]
        assert body["method"] == "wechat_payment_code" and body["via"] == method
    sent = central.wechat.requests[-1]
    assert sent["auth_code"] == WECHAT_CODE
    assert sent["appid"] == FakeWeChatPay.appid and sent["mch_id"] == FakeWeChatPay.mch_id
    assert len(sent["nonce_str"]) == 32


async def test_several_cards_on_one_account_last_used_wins(central: Any) -> None:
    openid = "oShared000000000000000000001"
    parent = await central.member(name="Parent")
    child = await central.member(name="Child")
    second = await central.ok("POST", f"/v1/members/{parent['id']}/cards", json={"kind": "virtual"})
    for member, card_id in (
        (parent, parent["cards"][0]["id"]),
        (parent, second["id"]),
        (child, child["cards"][0]["id"]),
    ):
        await central.ok(
            "POST",
            f"/v1/members/{member['id']}/payment-accounts",
            json={"provider": "wechat", "account_id": openid, "card_id": card_id},
        )
    central.wechat.openids[WECHAT_CODE] = openid
    touched = await central.ok("POST", f"/v1/members/{parent['id']}/cards/{second['id']}/touch")
    assert touched["last_used_at"] is not None
    status, body = await central.identify(WECHAT_CODE)
    assert body["card"]["id"] == second["id"] and body["member"]["id"] == parent["id"]
    central.clock.advance(5)
    await central.ok("POST", f"/v1/members/{child['id']}/cards/{child['cards'][0]['id']}/touch")
    status, body = await central.identify(WECHAT_CODE)
    assert status == 200 and body["member"]["id"] == child["id"]
    status, body, _ = await central.call(
        "POST",
        f"/v1/members/{child['id']}/payment-accounts",
        "admin",
        {"provider": "wechat", "account_id": openid},
    )
    assert (status, body["error"]["code"]) == (409, "already_bound")
    bindings = await central.ok("GET", f"/v1/members/{parent['id']}/payment-accounts")
    assert len(bindings["items"]) == 2


async def test_wechat_errors_map_to_statuses(central: Any) -> None:
    central.wechat.expired.add(WECHAT_CODE)
    status, body = await central.identify(WECHAT_CODE)
    assert (status, body["error"]["code"]) == (410, "payment_code_expired")
    status, body = await central.identify("104567890123456789")  # the fake does not know it
    assert (status, body["error"]["code"]) == (422, "payment_code_invalid")
    central.wechat.openids["114567890123456789"] = "oNobodyBoundThis"
    status, body = await central.identify("114567890123456789")
    assert (status, body["error"]["code"]) == (404, "not_bound")


async def test_wrong_api_key_is_refused_by_the_fake_and_is_502(wechat: Any) -> None:
    fake, url = wechat
    fake.openids[WECHAT_CODE] = "oX"
    async with aiohttp.ClientSession() as http:
        good = WeChatPayAdapter(
            http, base_url=url, appid=fake.appid, mch_id=fake.mch_id, api_key=fake.api_key
        )
        assert await good.account_for(WECHAT_CODE) == "oX"
        bad = WeChatPayAdapter(
            http, base_url=url, appid=fake.appid, mch_id=fake.mch_id, api_key="wrong"
        )
        with pytest.raises(UpstreamError):
            await bad.account_for(WECHAT_CODE)
        fake.expired.add("105555555555555555")
        with pytest.raises(Expired):
            await good.account_for("105555555555555555")
        with pytest.raises(Invalid):
            await good.account_for("106666666666666666")
    assert len(fake.requests) == 3  # the badly signed request was not accepted


async def test_unreachable_provider_is_502_and_not_recorded(
    central: Any, unused_tcp_port: int
) -> None:
    async with aiohttp.ClientSession() as http:
        adapter = WeChatPayAdapter(
            http,
            base_url=f"http://127.0.0.1:{unused_tcp_port}",
            appid="a",
            mch_id="m",
            api_key="k",
            timeout=2,
        )
        central.services.identifier._adapters["wechat"] = adapter
        status, body = await central.identify(WECHAT_CODE, event_id="evt-502")
    assert (status, body["error"]["code"]) == (502, "wechat_unreachable")
    async with central.services.db.read() as conn:
        count = await conn.scalar(sa.select(sa.func.count()).select_from(identifications))
    assert count == 0  # the gateway may retry the same event


async def test_alipay_code_through_the_bridge(central: Any) -> None:
    member = await central.member(name="Ali")
    await central.ok(
        "POST",
        f"/v1/members/{member['id']}/payment-accounts",
        json={"provider": "alipay", "account_id": "2088102146225135"},
    )
    central.alipay.users[ALIPAY_CODE] = "2088102146225135"
    status, body = await central.identify(ALIPAY_CODE, method="face")
    assert status == 200 and body["member"]["id"] == member["id"]
    assert body["method"] == "alipay_payment_code"
    central.alipay.expired.add("295678901234567890")
    status, body = await central.identify("295678901234567890")
    assert status == 410
    status, body = await central.identify("305678901234567890")
    assert status == 422


async def test_fake_server_speaks_xml_over_a_socket() -> None:
    fake = FakeWeChatPay(openids={WECHAT_CODE: "oRaw"})
    runner, url = await start_app(fake.app())
    try:
        params = {
            "appid": fake.appid,
            "mch_id": fake.mch_id,
            "auth_code": WECHAT_CODE,
            "nonce_str": "n" * 32,
        }
        params["sign"] = wechat_sign(params, fake.api_key)
        async with (
            aiohttp.ClientSession() as http,
            http.post(url + "/tools/authcodetoopenid", data=to_xml(params)) as resp,
        ):
            answer = from_xml(await resp.read())
        assert answer["return_code"] == "SUCCESS" and answer["openid"] == "oRaw"
        assert answer["sign"] == wechat_sign(answer, fake.api_key)
    finally:
        await runner.cleanup()

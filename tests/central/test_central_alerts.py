"""Alert rules over real HTTP heartbeats: fire once per incident, resolve, keep the history.

The notification senders are another engineer's module; here a recorder stands in for
``services.notifications`` through the same ``send_to`` contract, so the tests check what
alerts hand over (template, data, dedupe key), not how an SMS or an email is sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gatewayd.central.alerts import Alerts
from gatewayd.central.clock import ManualClock
from gatewayd.central.config import CentralSettings
from gatewayd.central.db import Database
from gatewayd.central.migrate import upgrade
from gatewayd.central.models_notify import notifications
from tests.central.conftest import SECRET, Central, start_central

SMS = {"channel": "sms", "address": "13800138000"}


class Recorder:
    """Keeps every ``send_to`` call; ``fail`` makes the next calls raise."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = False

    async def send_to(self, **kwargs: Any) -> None:
        if self.fail:
            raise ConnectionError("sms gateway down")
        self.sent.append(kwargs)


def _recorder(central: Central) -> Recorder:
    recorder = Recorder()
    central.services.alerts.use_sender(recorder)
    return recorder


async def _beat(central: Central, gateway: str, **payload: Any) -> None:
    """A heartbeat as gateways send it: an item of their outbox."""
    item = {"kind": "heartbeat", "key": f"heartbeat:{central.clock.now()}", "payload": payload}
    body = await central.ok("POST", f"/v1/gateways/{gateway}/outbox", gateway, {"items": [item]})
    assert body["results"][0]["status"] == 200, body


async def _rule(central: Central, **fields: Any) -> dict[str, Any]:
    fields.setdefault("name", f"{fields['kind']} rule")
    fields.setdefault("recipients", [SMS])
    return dict(await central.ok("POST", "/v1/alert-rules", json=fields))


async def test_gateway_offline_fires_once_across_workers_and_resolves(central: Central) -> None:
    sent = _recorder(central)
    rule = await _rule(central, kind="gateway_offline", threshold=5)
    await _beat(central, "gw-1")
    await _beat(central, "gw-2")
    assert await central.services.alerts.evaluate() == {"fired": 0, "resolved": 0}
    central.clock.advance(6 * 60)
    await _beat(central, "gw-2")
    # Two workers evaluating at the same moment: one incident, one notification.
    other_worker = Alerts(central.services.db, central.clock, central.services.dashboard, sent)
    results = await asyncio.gather(central.services.alerts.evaluate(), other_worker.evaluate())
    assert sum(r["fired"] for r in results) == 1
    assert (await central.services.alerts.evaluate())["fired"] == 0
    assert [(s["template"], s["data"]["subject"]) for s in sent.sent] == [("alert_fired", "gw-1")]
    assert sent.sent[0]["channel"] == "sms" and sent.sent[0]["address"] == SMS["address"]
    open_ = await central.ok("GET", "/v1/alert-incidents?open=true")
    assert [(i["rule"], i["subject"], i["notified"]) for i in open_["items"]] == [
        (rule["id"], "gw-1", 1)
    ]
    await _beat(central, "gw-1")
    assert (await central.services.alerts.evaluate())["resolved"] == 1
    assert [s["template"] for s in sent.sent] == ["alert_fired", "alert_resolved"]
    assert len({s["dedupe_key"] for s in sent.sent}) == 2
    history = (await central.ok("GET", "/v1/alert-incidents"))["items"]
    assert len(history) == 1 and history[0]["resolved_at"] is not None
    assert (await central.ok("GET", "/v1/alert-incidents?open=true"))["items"] == []
    central.clock.advance(6 * 60)  # both silent now: new incidents, new notifications
    assert (await central.services.alerts.evaluate())["fired"] == 2
    assert len((await central.ok("GET", "/v1/alert-incidents"))["items"]) == 3
    assert sorted(s["data"]["subject"] for s in sent.sent[2:]) == ["gw-1", "gw-2"]


async def test_device_failed_for_n_minutes_and_store_scope(central: Central) -> None:
    sent = _recorder(central)
    await _rule(central, kind="device_failed", threshold=2)
    await _rule(central, kind="device_failed", threshold=1, store="store-2", name="store 2 only")
    await _beat(central, "gw-1", devices={"gun": "online", "cam": "failed"})
    central.clock.advance(60)
    await _beat(central, "gw-1", devices={"gun": "online", "cam": "failed"})
    assert (await central.services.alerts.evaluate())["fired"] == 0  # failed for 1 min only
    central.clock.advance(70)
    await _beat(central, "gw-1", devices={"gun": "online", "cam": "failed"})
    assert (await central.services.alerts.evaluate())["fired"] == 1
    fired = sent.sent[0]
    assert fired["data"]["subject"] == "gw-1/cam" and fired["data"]["rule"] == "device_failed rule"
    assert "cam" in fired["data"]["detail"] and "failed" in fired["data"]["detail"]
    await _beat(central, "gw-1", devices={"gun": "online", "cam": "online"})
    assert await central.services.alerts.evaluate() == {"fired": 0, "resolved": 1}


async def test_backlog_over_and_delivery_failures_are_recorded(central: Central) -> None:
    sent = _recorder(central)
    sent.fail = True
    await _rule(central, kind="backlog_over", threshold=100)
    await _beat(central, "gw-2", outbox={"depth": 100, "dropped": 0})
    assert (await central.services.alerts.evaluate())["fired"] == 0  # not over
    await _beat(central, "gw-2", outbox={"depth": 101, "dropped": 0})
    assert (await central.services.alerts.evaluate())["fired"] == 1
    incident = (await central.ok("GET", "/v1/alert-incidents"))["items"][0]
    assert incident["subject"] == "gw-2" and "101" in incident["detail"]
    assert incident["notified"] == 0 and "sms gateway down" in incident["delivery_error"]


async def test_disabled_rules_resolve_and_bad_rules_are_refused(central: Central) -> None:
    _recorder(central)
    rule = await _rule(central, kind="gateway_offline", threshold=1)
    await _beat(central, "gw-1")
    central.clock.advance(120)
    assert (await central.services.alerts.evaluate())["fired"] == 1
    disabled = await central.ok("DELETE", f"/v1/alert-rules/{rule['id']}")
    assert disabled["enabled"] is False
    assert (await central.services.alerts.evaluate())["resolved"] == 1
    bad = {"name": "x", "kind": "cpu_hot", "threshold": 1, "recipients": [SMS]}
    status, body, _ = await central.call("POST", "/v1/alert-rules", json=bad)
    assert status == 422 and "kind" in body["error"]["message"]
    for fields in ({"threshold": 0}, {"recipients": []}, {"store": "no-such-store"}):
        status, _, _ = await central.call(
            "POST",
            "/v1/alert-rules",
            json={"name": "x", "kind": "gateway_offline", "threshold": 5, "recipients": [SMS]}
            | fields,
        )
        assert status in (404, 422), fields
    status, _, _ = await central.call("POST", "/v1/alert-rules", "gw-1", json=bad)
    assert status == 403
    status, _, _ = await central.call("DELETE", "/v1/alert-rules/999")
    assert status == 404


async def test_alerts_reach_the_real_notification_outbox(central: Central) -> None:
    """Wired as in production: the incident becomes a staff message in the outbox."""
    await _rule(
        central,
        kind="gateway_offline",
        threshold=5,
        recipients=[SMS, {"channel": "email", "address": "ops@example.com"}],
    )
    await _beat(central, "gw-1")
    await _beat(central, "gw-2")
    central.clock.advance(6 * 60)
    await _beat(central, "gw-2")
    assert (await central.services.alerts.evaluate())["fired"] == 1
    async with central.services.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(notifications.c.kind, notifications.c.channel, notifications.c.text)
            )
        ).all()
    assert sorted((r.kind, r.channel) for r in rows) == [
        ("alert_fired", "email"),
        ("alert_fired", "sms"),
    ]
    assert all("gw-1" in r.text for r in rows)
    incident = (await central.ok("GET", "/v1/alert-incidents"))["items"][0]
    assert incident["notified"] == 2 and incident["delivery_error"] is None
    bad = {"name": "x", "kind": "gateway_offline", "threshold": 5}
    status, body, _ = await central.call(
        "POST", "/v1/alert-rules", json=bad | {"recipients": [{"channel": "sms", "address": "x"}]}
    )
    assert (status, body["error"]["code"]) == (422, "invalid_address")


async def test_central_evaluates_rules_by_itself_every_alert_interval(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    db = Database.from_url(url)
    try:
        await upgrade(db)
    finally:
        await db.close()
    settings = CentralSettings(db=url, secret=SECRET, alert_interval=0.2)
    central, stop = await start_central(settings, ManualClock())
    try:
        await _rule(central, kind="gateway_offline", threshold=5)
        await _beat(central, "gw-1")
        central.clock.advance(6 * 60)
        for _ in range(50):
            items = (await central.ok("GET", "/v1/alert-incidents"))["items"]
            if items:
                break
            await asyncio.sleep(0.1)
        assert [i["subject"] for i in items] == ["gw-1"]
    finally:
        await stop()

"""Service plans on both backends: booked at a till, reminded at the store's terminals through
the central → gateway channel and to the member by SMS, exactly once with several workers."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gatewayd.central.clock import ManualClock
from gatewayd.central.db import Database
from gatewayd.central.member_events import MemberEvents
from gatewayd.central.models import channel_messages
from gatewayd.central.models_notify import notifications
from gatewayd.central.notifications import Notifications
from gatewayd.central.service_plans import ServicePlans
from tests.central.conftest import Central, make_settings, start_central
from tests.central.test_central_notifications import senders_file
from tests.central.test_central_senders import (  # noqa: F401 - the fixtures are used by name
    FakeSmsGateway,
    RecordingHandler,
    sms_gateway_fixture,
    smtp_server_fixture,
)

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
async def plans(
    db_url: str,
    clock: ManualClock,
    tmp_path: Path,
    sms_gateway: tuple[FakeSmsGateway, str],
    smtp_server: tuple[RecordingHandler, int],
) -> AsyncIterator[Central]:
    settings = make_settings(
        db_url,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        notify_senders=senders_file(tmp_path, sms_gateway[1], smtp_server[1]),
        notify_loops=0,
        alert_interval=0.0,
    )
    running, stop = await start_central(settings, clock)
    yield running
    await stop()


async def reminders(central: Central) -> list[dict[str, Any]]:
    async with central.services.db.read() as conn:
        found = await conn.execute(
            sa.select(channel_messages)
            .where(channel_messages.c.kind == "service_reminder")
            .order_by(channel_messages.c.id)
        )
        return [{"store": r.store_id, **json.loads(r.payload)} for r in found]


async def due_messages(central: Central) -> list[Any]:
    async with central.services.db.read() as conn:
        found = await conn.execute(
            sa.select(notifications).where(notifications.c.kind == "service_due")
        )
        return list(found)


async def test_book_list_complete_and_cancel(plans: Central) -> None:
    member = await plans.ok("POST", "/v1/members", json={"name": "车主", "phone": "13900000040"})
    path = f"/v1/members/{member['id']}/service-plans"
    body = {"store": "store-1", "text": "保养", "due_in_days": 60, "remind_days_before": 3}
    plan = await plans.ok("POST", path, key="gw-1", json=body)
    assert (plan["due_date"], plan["remind_on"], plan["status"]) == (
        "2026-03-02",
        "2026-02-27",
        "open",
    )
    dated = await plans.ok(
        "POST",
        path,
        key="gw-1",
        json={"store": "store-1", "text": "年检", "due_date": "2026-01-10"},
    )
    assert dated["remind_days_before"] == 3 and dated["remind_on"] == "2026-01-07"
    listed = await plans.ok("GET", path, key="gw-2")
    assert [p["text"] for p in listed["items"]] == ["年检", "保养"]
    status, body_, _ = await plans.call("POST", path, key="gw-2", json=body)
    assert (status, body_["error"]["code"]) == (403, "other_store")
    for bad in (
        {"store": "store-1", "text": "x"},
        {"store": "store-1", "text": "x", "due_in_days": 1, "due_date": "2026-02-01"},
        {"store": "store-1", "text": "", "due_in_days": 1},
        {"store": "store-1", "text": "x", "due_in_days": 1, "remind_days_before": -1},
    ):
        status, _, _ = await plans.call("POST", path, key="gw-1", json=bad)
        assert status == 422, bad
    status, body_, _ = await plans.call(
        "POST", path, json={"store": "store-1", "text": "x", "due_date": "2025-12-31"}
    )
    assert (status, body_["error"]["code"]) == (422, "due_in_past")
    status, body_, _ = await plans.call(
        "POST", path, json={"store": "nowhere", "text": "x", "due_in_days": 1}
    )
    assert (status, body_["error"]["code"]) == (404, "store_not_found")
    done = await plans.ok("POST", f"/v1/service-plans/{plan['id']}/complete", key="gw-1")
    assert done["status"] == "completed" and done["completed_at"]
    status, body_, _ = await plans.call("POST", f"/v1/service-plans/{plan['id']}/cancel")
    assert (status, body_["error"]["code"]) == (409, "plan_closed")
    status, _, _ = await plans.call("POST", f"/v1/service-plans/{dated['id']}/cancel", key="gw-2")
    assert status == 403
    assert (await plans.ok("POST", f"/v1/service-plans/{dated['id']}/cancel"))["status"] == (
        "cancelled"
    )
    status, _, _ = await plans.call("GET", "/v1/members/999999/service-plans")
    assert status == 404


async def test_reminder_reaches_terminals_and_member_once(
    plans: Central, clock: ManualClock, sms_gateway: tuple[FakeSmsGateway, str]
) -> None:
    member = await plans.ok("POST", "/v1/members", json={"name": "张三", "phone": "13900000041"})
    path = f"/v1/members/{member['id']}/service-plans"
    plan = await plans.ok(
        "POST", path, key="gw-1", json={"store": "store-1", "text": "换机油", "due_in_days": 10}
    )
    scheduler = plans.services.notify_loops.scheduler
    assert scheduler is not None
    clock.advance(6 * 86400)  # 2026-01-07 08:00 Shanghai: the remind day is 2026-01-08
    assert (await scheduler.run_once())["service_due"] == 0
    clock.advance(86400 - 9 * 3600)  # 2026-01-07 23:00: still not the day
    assert (await scheduler.run_once())["service_due"] == 0
    clock.advance(3600)  # midnight, 2026-01-08 in Shanghai
    assert (await scheduler.run_once())["service_due"] == 1
    assert (await scheduler.run_once())["service_due"] == 0
    (posted,) = await reminders(plans)
    assert posted["store"] == "store-1" and posted["plan_id"] == plan["id"]
    assert posted["phone_masked"] == "*******0041" and posted["due_date"] == "2026-01-11"
    assert "13900000041" not in json.dumps(posted)
    (queued,) = await due_messages(plans)
    assert queued.marketing and queued.store_id == "store-1"
    assert "换机油" in queued.text and "2026-01-11" in queued.text and "Store-1" in queued.text
    listed = await plans.ok("GET", path)
    assert listed["items"][0]["status"] == "reminded" and listed["items"][0]["reminded_at"]
    # the gateway of store-1 sees it on its channel; store-2's does not
    channel = await read_channel(plans, "gw-1")
    assert [m["kind"] for m in channel].count("service_reminder") == 1
    assert "service_reminder" not in [m["kind"] for m in await read_channel(plans, "gw-2")]
    # at midnight quiet hours hold the member's SMS until 08:00
    dispatcher = plans.services.notify_loops.dispatcher
    assert dispatcher is not None
    await dispatcher.run_once()
    assert not [m for m in sms_gateway[0].received if "换机油" in m["content"]]
    clock.advance(8 * 3600)
    await dispatcher.run_once()
    assert [m["mobile"] for m in sms_gateway[0].received if "换机油" in m["content"]] == [
        "13900000041"
    ]
    done = await plans.ok("POST", f"/v1/service-plans/{plan['id']}/complete", key="gw-1")
    assert done["status"] == "completed"


async def read_channel(central: Central, gateway: str) -> list[dict[str, Any]]:
    """What the gateway's channel carries (the function behind its server-sent events)."""
    link = central.services.link
    return await link.messages_after(await link.store_of(gateway), gateway, 0)


async def test_several_workers_remind_exactly_once(
    plans: Central, db_url: str, clock: ManualClock
) -> None:
    for n in range(8):
        member = await plans.ok(
            "POST", "/v1/members", json={"name": f"车主{n}", "phone": f"1390000{n:04d}"}
        )
        await plans.ok(
            "POST",
            f"/v1/members/{member['id']}/service-plans",
            json={"store": "store-1", "text": f"保养{n}", "due_in_days": 3},
        )
    clock.advance(2 * 86400)
    workers = []
    databases = [Database.from_url(db_url) for _ in range(3)]
    try:
        for db in databases:
            events = MemberEvents()
            notes = Notifications(db, clock, plans.services.notifications.senders)
            events.subscribe(notes.on_event)
            workers.append(ServicePlans(db, clock, events, notes))
        counts = await asyncio.gather(*(w.remind_due() for w in workers))
    finally:
        for db in databases:
            await db.close()
    assert sum(counts) == 8
    assert len(await reminders(plans)) == 8
    assert len(await due_messages(plans)) == 8

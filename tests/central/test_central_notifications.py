"""Member notifications end to end, on both backends, over real sockets: central, a fake SMS
gateway (aiohttp) and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import structlog
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.central.clock import ManualClock
from gatewayd.central.db import Database
from gatewayd.central.errors import Invalid
from gatewayd.central.member_events import MemberEvent
from gatewayd.central.models_notify import notifications
from gatewayd.central.notifications import Notifications, yuan
from gatewayd.central.notify_dispatch import Dispatcher, backoff_seconds, quiet_until
from gatewayd.central.notify_inbound import is_opt_out
from gatewayd.central.senders import SenderRegistry
from tests.central.conftest import Central, make_settings, start_central
from tests.central.test_central_senders import (  # noqa: F401 - the fixtures are used by name
    FakeSmsGateway,
    RecordingHandler,
    sms_gateway_fixture,
    sms_options,
    smtp_server_fixture,
)

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def senders_file(tmp_path: Path, sms_url: str, smtp_port: int) -> str:
    options = sms_options(sms_url)
    lines = ["[sms]"]
    for key, value in options.items():
        if isinstance(value, dict):
            inner = ", ".join(f'"{k}" = "{v}"' for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        elif isinstance(value, str):
            lines.append(f"{key} = '{value}'")
        else:
            lines.append(f"{key} = {value}")
    lines += ["[email]", 'plugin = "smtp"', 'host = "127.0.0.1"', f"port = {smtp_port}"]
    lines.append('from = "hq@chain.example"')
    path = tmp_path / "senders.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
async def notify(
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
        notify_max_attempts=3,
        alert_interval=0.0,
    )
    running, stop = await start_central(settings, clock)
    yield running
    await stop()


def dispatcher(central: Central) -> Dispatcher:
    found = central.services.notify_loops.dispatcher
    assert found is not None
    return found


async def rows(central: Central, **where: Any) -> list[Any]:
    query = sa.select(notifications).order_by(notifications.c.id)
    for name, value in where.items():
        query = query.where(notifications.c[name] == value)
    async with central.services.db.read() as conn:
        return list((await conn.execute(query)).all())


async def emit(central: Central, kind: str, member_id: int, key: str, **data: Any) -> None:
    svc = central.services
    async with svc.db.write() as conn:
        await svc.events.emit(
            conn,
            MemberEvent(kind=kind, member_id=member_id, key=key, store_id="store-1", data=data),
        )


async def drain(central: Central) -> None:
    while await dispatcher(central).run_once():
        pass


def at_shanghai(clock: ManualClock, hour: int, minute: int = 0, day_offset: int = 0) -> None:
    """Move the clock forward to ``hour:minute`` Shanghai time, ``day_offset`` days on."""
    now = dt.datetime.fromtimestamp(clock.now(), SHANGHAI)
    target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    target += dt.timedelta(days=day_offset)
    if target.timestamp() < clock.now():
        target += dt.timedelta(days=1)
    clock.advance(target.timestamp() - clock.now())


# --- pure parts -------------------------------------------------------------------------------


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_yuan_is_exact(fen: int) -> None:
    text = yuan(fen)
    whole, _, cents = text.lstrip("-").partition(".")
    assert len(cents) == 2
    assert (int(whole) * 100 + int(cents)) * (-1 if text.startswith("-") else 1) == fen


@given(
    st.integers(min_value=1_700_000_000, max_value=1_900_000_000),
    st.sampled_from(["21:00", "22:30", "00:00", "09:00"]),
    st.sampled_from(["08:00", "06:15", "23:59", "09:00"]),
)
def test_quiet_until_ends_at_the_end_of_the_window(now: int, start: str, end: str) -> None:
    until = quiet_until(now, "Asia/Shanghai", start, end)
    local = dt.datetime.fromtimestamp(now, SHANGHAI).strftime("%H:%M")
    inside = (start <= local < end) if start < end else (local >= start or local < end)
    if start == end or not inside:
        assert until is None
    else:
        assert until is not None and now < until <= now + 86400
        assert dt.datetime.fromtimestamp(until, SHANGHAI).strftime("%H:%M") == end


def test_opt_out_words_and_backoff() -> None:
    for text in ("TD", "td", " 退订 ", "退订。", "T", "stop!", "Unsubscribe"):
        assert is_opt_out(text), text
    for text in ("谢谢", "TD please call me", "", "好的"):
        assert not is_opt_out(text), text
    assert [backoff_seconds(n, 30) for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff_seconds(50, 30) == 6 * 3600


# --- the outbox -----------------------------------------------------------------------------


async def test_registration_is_sent_by_sms_and_email(
    notify: Central,
    sms_gateway: tuple[FakeSmsGateway, str],
    smtp_server: tuple[RecordingHandler, int],
) -> None:
    member = await notify.ok(
        "POST", "/v1/members", json={"name": "李雷", "phone": "13800138000", "email": "li@x.cn"}
    )
    queued = await rows(notify, member_id=member["id"])
    assert sorted(r.channel for r in queued) == ["email", "sms"]
    assert {r.kind for r in queued} == {"registered"} and not any(r.marketing for r in queued)
    await drain(notify)
    fake, handler = sms_gateway[0], smtp_server[0]
    assert [m["mobile"] for m in fake.received] == ["13800138000"]
    assert fake.received[0]["content"] == "尊敬的李雷，欢迎加入会员！您的会员等级为default。"
    assert handler.messages[0]["Subject"] == "欢迎加入会员"
    assert [r.status for r in await rows(notify, member_id=member["id"])] == ["sent", "sent"]
    listed = await notify.ok("GET", f"/v1/notifications?member_id={member['id']}&status=sent")
    assert {i["address_masked"] for i in listed["items"]} == {"*******8000", "l***@x.cn"}
    assert "13800138000" not in str(listed)
    status, _, _ = await notify.call("GET", "/v1/notifications", key="gw-1")
    assert status == 403
    # Ids beyond any row (PostgreSQL's integer) find nothing; non-ASCII digits are refused.
    beyond = await notify.ok("GET", "/v1/notifications?member_id=982559350817")
    assert beyond == {"items": []}
    for query in ("member_id=%C2%B2", "limit=%C2%B2", "member_id=1234567890123456789012"):
        status, body, _ = await notify.call("GET", f"/v1/notifications?{query}")
        assert (status, body["error"]["code"]) == (422, "invalid_request"), query


async def test_rolled_back_events_send_nothing_and_keys_dedupe(notify: Central) -> None:
    member = await notify.ok("POST", "/v1/members", json={"name": "韩梅梅", "phone": "13900000001"})
    svc = notify.services
    with pytest.raises(RuntimeError):
        async with svc.db.write() as conn:
            await svc.events.emit(
                conn, MemberEvent(kind="points_earned", member_id=member["id"], key="o1")
            )
            raise RuntimeError("the order failed after emitting")
    assert await rows(notify, kind="points_earned") == []
    for _ in range(2):  # a retried request emits the same fact again
        await emit(notify, "points_earned", member["id"], "order:9", points=120)
    earned = await rows(notify, kind="points_earned")
    assert len(earned) == 1
    assert earned[0].text == "尊敬的韩梅梅，您本次获得120积分，当前积分0。"
    await emit(notify, "stored_value_debited", member["id"], "order:9:d", amount_fen=12345)
    (debit,) = await rows(notify, kind="stored_value_debited")
    assert "扣款123.45元，余额0.00元" in debit.text


async def test_failures_back_off_then_fail(
    notify: Central, clock: ManualClock, sms_gateway: tuple[FakeSmsGateway, str]
) -> None:
    fake = sms_gateway[0]
    member = await notify.ok("POST", "/v1/members", json={"name": "王五", "phone": "13900000002"})
    await drain(notify)  # the welcome message
    fake.script = [(500, {"msg": "busy"})] * 2
    await emit(notify, "recharged", member["id"], "r1", amount_fen=10000)
    assert await dispatcher(notify).run_once() == 1
    (row,) = await rows(notify, kind="recharged")
    assert (row.status, row.attempts) == ("pending", 1) and "busy" in row.last_error
    assert row.next_at == round((clock.now() + 30) * 1000)
    assert await dispatcher(notify).run_once() == 0  # not due yet
    clock.advance(30)
    await drain(notify)
    (row,) = await rows(notify, kind="recharged")
    assert (row.status, row.attempts) == ("pending", 2)
    assert row.next_at == round((clock.now() + 60) * 1000)
    clock.advance(60)
    await drain(notify)
    (row,) = await rows(notify, kind="recharged")
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    assert fake.received[-1]["content"].startswith("尊敬的王五，您已成功充值100.00元")
    # a permanent refusal fails at once; three temporary ones fail at the attempt limit
    fake.script = [(400, {"msg": "bad number"})] + [(503, {"msg": "down"})] * 3
    await emit(notify, "refunded", member["id"], "f1", amount_fen=100)
    await emit(notify, "refunded", member["id"], "f2", amount_fen=200)
    for _ in range(4):
        await drain(notify)
        clock.advance(600)
    assert [(r.status, r.attempts) for r in await rows(notify, kind="refunded")] == [
        ("failed", 1),
        ("failed", 3),
    ]


async def test_quiet_hours_hold_marketing_only(
    notify: Central, clock: ManualClock, sms_gateway: tuple[FakeSmsGateway, str]
) -> None:
    fake = sms_gateway[0]
    member = await notify.ok("POST", "/v1/members", json={"name": "赵六", "phone": "13900000003"})
    await drain(notify)
    at_shanghai(clock, 22, 30)
    await emit(notify, "birthday", member["id"], "b1")
    await emit(notify, "stored_value_debited", member["id"], "d1", amount_fen=500)
    await drain(notify)
    assert [m["content"][:8] for m in fake.received][-1].startswith("尊敬的赵六")
    (held,) = await rows(notify, kind="birthday")
    assert held.status == "pending" and held.attempts == 0
    morning = dt.datetime.fromtimestamp(held.next_at / 1000, SHANGHAI)
    assert (morning.hour, morning.minute) == (8, 0)
    assert (await rows(notify, kind="stored_value_debited"))[0].status == "sent"
    at_shanghai(clock, 8, 0)
    await drain(notify)
    assert (await rows(notify, kind="birthday"))[0].status == "sent"
    # the chain may change or drop its quiet hours
    await notify.ok(
        "PUT", "/v1/notifications/settings", json={"quiet_start": None, "quiet_end": None}
    )
    at_shanghai(clock, 23, 0)
    await emit(notify, "dormant", member["id"], "w1")
    await drain(notify)
    assert (await rows(notify, kind="dormant"))[0].status == "sent"
    status, body, _ = await notify.call(
        "PUT", "/v1/notifications/settings", json={"timezone": "Mars/Olympus"}
    )
    assert (status, body["error"]["code"]) == (422, "invalid_request")


async def test_opt_outs_and_inbound_replies(
    notify: Central, sms_gateway: tuple[FakeSmsGateway, str]
) -> None:
    member = await notify.ok(
        "POST", "/v1/members", json={"name": "钱七", "phone": "13900000004", "email": "q@x.cn"}
    )
    path = f"/v1/members/{member['id']}/notification-opt-outs"
    assert await notify.ok("PUT", f"{path}/sms", key="gw-1") == {"channels": ["sms"]}
    await drain(notify)  # the queued welcome SMS is skipped, the email goes
    statuses = {r.channel: r.status for r in await rows(notify, member_id=member["id"])}
    assert statuses == {"sms": "skipped", "email": "sent"}
    await emit(notify, "points_earned", member["id"], "p1", points=5)
    assert [r.channel for r in await rows(notify, kind="points_earned")] == ["email"]
    assert await notify.ok("DELETE", f"{path}/sms", key="gw-2") == {"channels": []}

    token = (await notify.ok("PUT", "/v1/notifications/inbound-tokens/sms"))["token"]
    inbound = "/v1/notifications/inbound/sms"
    reply = {"phone": "+8613900000004", "text": "退订", "message_id": "r-1"}
    for bad in (None, "wrong", "cka_" + "x" * 40):
        status, body, _ = await notify.call("POST", inbound, key=bad, json=reply)
        assert (status, body["error"]["code"]) == (401, "bad_token")
    assert await notify.ok("POST", inbound, key=token, json=reply) == {
        "member_id": member["id"],
        "opted_out": True,
    }
    await notify.ok("POST", inbound, key=token, json=reply)  # the gateway retries: stored once
    assert (await notify.ok("GET", path)) == {"channels": ["sms"]}
    status, body, _ = await notify.call(
        "POST",
        f"{inbound}?token={token}",
        key=None,
        data={"phone": "13700000000", "text": "TD"},
    )
    assert (status, body) == (200, {"member_id": None, "opted_out": False})
    replies = await notify.ok("GET", f"/v1/members/{member['id']}/replies", key="gw-1")
    assert [(r["text"], r["opted_out"]) for r in replies["items"]] == [("退订", True)]
    status, _, _ = await notify.call("POST", inbound, key=token, json={"phone": "1", "text": ""})
    assert status == 422
    status, _, _ = await notify.call("PUT", "/v1/members/99999/notification-opt-outs/sms")
    assert status == 404


async def test_templates_per_chain_and_store(notify: Central) -> None:
    member = await notify.ok("POST", "/v1/members", json={"name": "孙八", "phone": "13900000005"})
    base = "/v1/notifications/templates/points_earned/sms"
    await notify.ok("PUT", base, json={"text": "【连锁】{member_name}得{points}分"})
    await notify.ok(
        "PUT", base, json={"store": "store-1", "text": "【一店】{member_name}+{points}"}
    )
    await emit(notify, "points_earned", member["id"], "a", points=3)
    svc = notify.services
    async with svc.db.write() as conn:
        await svc.events.emit(
            conn,
            MemberEvent(
                kind="points_earned",
                member_id=member["id"],
                key="b",
                store_id="store-2",
                data={"points": 4},
            ),
        )
    texts = [r.text for r in await rows(notify, kind="points_earned")]
    assert texts == ["【一店】孙八+3", "【连锁】孙八得4分"]
    listed = (await notify.ok("GET", "/v1/notifications/templates"))["items"]
    assert {(t["store"], t["default"]) for t in listed if t["kind"] == "points_earned"} == {
        ("store-1", False),
        (None, False),
        (None, True),
    }
    status, body, _ = await notify.call("PUT", base, json={"text": "bad {member.__class__}"})
    assert (status, body["error"]["code"]) == (422, "invalid_template")
    status, body, _ = await notify.call("PUT", base, json={"store": "nowhere", "text": "x"})
    assert (status, body["error"]["code"]) == (404, "store_not_found")
    status, _, _ = await notify.call("DELETE", base + "?store=store-1")
    assert status == 204
    status, _, _ = await notify.call("DELETE", base + "?store=store-1")
    assert status == 404


async def test_send_to_for_staff_alerts(
    notify: Central,
    sms_gateway: tuple[FakeSmsGateway, str],
    smtp_server: tuple[RecordingHandler, int],
) -> None:
    service = notify.services.notifications
    data = {"subject": "一店网关离线", "detail": "gw-1 已 10 分钟无心跳", "at": "22:05"}
    for _ in range(2):
        await service.send_to(
            channel="sms",
            address="13600000000",
            template="alert_fired",
            data=data,
            dedupe_key="incident:1:fired",
        )
    await service.send_to(
        channel="email",
        address="ops@chain.example",
        template="{subject} ({detail})",
        data=data,
        dedupe_key="incident:1:fired:email",
    )
    await service.send_to(
        channel="wecom", address="ops", template="staff_alert", data=data, dedupe_key="w"
    )
    with pytest.raises(Invalid):
        await service.send_to(
            channel="sms", address="call me", template="x", data={}, dedupe_key="bad"
        )
    await drain(notify)
    staff = await rows(notify, member_id=None)
    assert [(r.kind, r.channel, r.status, r.marketing) for r in staff] == [
        ("alert_fired", "sms", "sent", False),
        ("staff_alert", "email", "sent", False),
        ("staff_alert", "wecom", "failed", False),
    ]
    assert (
        sms_gateway[0].received[0]["content"]
        == "【门店告警】一店网关离线：gw-1 已 10 分钟无心跳（22:05）"
    )
    assert (
        smtp_server[0].messages[0].get_content().strip() == "一店网关离线 (gw-1 已 10 分钟无心跳)"
    )


async def test_two_workers_send_each_message_once(
    notify: Central, db_url: str, sms_gateway: tuple[FakeSmsGateway, str]
) -> None:
    fake = sms_gateway[0]
    fake.delay = 0.02
    for n in range(12):
        await notify.ok(
            "POST", "/v1/members", json={"name": f"会员{n}", "phone": f"1380000{n:04d}"}
        )
    svc = notify.services
    other_db = Database.from_url(db_url)
    try:
        sms = svc.notifications.senders.get("sms")
        assert sms is not None
        other_worker = Notifications(other_db, notify.clock, SenderRegistry({"sms": sms}))
        other = Dispatcher(other_db, notify.clock, other_worker, batch=3)
        mine = Dispatcher(svc.db, notify.clock, svc.notifications, batch=3)
        while sum(await asyncio.gather(mine.run_once(), other.run_once())):
            pass
    finally:
        await other_db.close()
    sent = [m["id"] for m in fake.received]
    assert len(sent) == 12 and len(set(sent)) == 12
    assert {r.status for r in await rows(notify, channel="sms")} == {"sent"}


async def test_logs_never_show_full_phones_or_emails(
    notify: Central, sms_gateway: tuple[FakeSmsGateway, str]
) -> None:
    sms_gateway[0].script = [(500, {"msg": "bad mobile 13900000009"})]
    with structlog.testing.capture_logs() as logs:
        await notify.ok(
            "POST", "/v1/members", json={"name": "周九", "phone": "13900000009", "email": "z@x.cn"}
        )
        await drain(notify)
    assert any(e["event"] == "notification_retry" for e in logs)
    assert any(e["event"] == "notification_sent" for e in logs)
    text = str(logs)
    assert "13900000009" not in text and "z@x.cn" not in text
    (row,) = await rows(notify, channel="sms")
    assert "13900000009" not in row.last_error


async def test_loops_run_inside_the_app(
    db_url: str,
    clock: ManualClock,
    tmp_path: Path,
    sms_gateway: tuple[FakeSmsGateway, str],
    smtp_server: tuple[RecordingHandler, int],
) -> None:
    settings = make_settings(
        db_url,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        notify_senders=senders_file(tmp_path, sms_gateway[1], smtp_server[1]),
        notify_poll=0.05,
        alert_interval=0.0,
    )
    central, stop = await start_central(settings, clock)
    try:
        await central.ok("POST", "/v1/members", json={"name": "吴十", "phone": "13900000010"})
        for _ in range(300):  # up to 15 s on a loaded machine
            if sms_gateway[0].received:
                break
            await asyncio.sleep(0.05)
        assert [m["mobile"] for m in sms_gateway[0].received] == ["13900000010"]
    finally:
        await stop()


# --- scheduled messages and campaigns ------------------------------------------------------


async def test_scheduler_birthdays_dormant_and_redeemable(
    notify: Central, clock: ManualClock
) -> None:
    scheduler = notify.services.notify_loops.scheduler
    assert scheduler is not None
    await notify.ok(
        "PUT",
        "/v1/notifications/settings",
        json={"dormant_days": 30, "redeemable_points": 100},
    )
    today = await notify.ok(
        "POST",
        "/v1/members",
        json={"name": "寿星", "phone": "13900000020", "birthday": "1990-01-01"},
    )
    await notify.ok(
        "POST",
        "/v1/members",
        json={"name": "明天", "phone": "13900000021", "birthday": "1990-01-02"},
    )
    rich = await notify.ok(
        "POST", "/v1/members", json={"name": "富翁", "phone": "13900000022", "points": 150}
    )
    first = await scheduler.run_once()
    assert first == {"service_due": 0, "birthday": 1, "dormant": 0, "points_redeemable": 1}
    assert [r.member_id for r in await rows(notify, kind="birthday")] == [today["id"]]
    (redeemable,) = await rows(notify, kind="points_redeemable")
    assert redeemable.member_id == rich["id"] and "积分150" in redeemable.text
    assert await scheduler.run_once() == {"service_due": 0}  # once a day
    clock.advance(31 * 86400)
    visitor = await notify.member(name="常客", phone="13900000023")
    clock.advance(86400)
    assert (await notify.identify(visitor["cards"][0]["member_code"]))[0] == 200
    counts = await scheduler.run_once()
    dormant = await rows(notify, kind="dormant")
    assert counts["dormant"] == 3 and visitor["id"] not in {r.member_id for r in dormant}
    assert len(dormant) == 3 and dormant[0].marketing and dormant[0].text.endswith("回复TD退订")


async def test_campaigns_select_members_once(notify: Central) -> None:
    gold = await notify.member(name="金卡", phone="13900000030", level="gold")
    await notify.ok("POST", "/v1/members", json={"name": "普卡", "phone": "13900000031"})
    await notify.ok("POST", "/v1/members", json={"name": "金卡无号", "level": "gold"})
    assert (await notify.identify(gold["cards"][0]["member_code"]))[0] == 200
    campaign = {
        "key": "gold-day-2026-01",
        "name": "金卡会员日",
        "text": "{member_name}，金卡会员日全场8折。回复TD退订",
        "filter": {"level": "gold"},
    }
    status, body, _ = await notify.call("POST", "/v1/notifications/campaigns", json=campaign)
    assert status == 201 and body["queued"] == 1 and not body["repeated"]
    status, again, _ = await notify.call("POST", "/v1/notifications/campaigns", json=campaign)
    assert status == 201 and again["repeated"] and again["id"] == body["id"]
    (row,) = await rows(notify, kind="campaign")
    assert row.text == "金卡，金卡会员日全场8折。回复TD退订" and row.marketing
    by_store = {**campaign, "key": "store-2", "filter": {"store": "store-2"}}
    assert (await notify.ok("POST", "/v1/notifications/campaigns", json=by_store))["queued"] == 0
    by_store = {**campaign, "key": "store-1", "filter": {"store": "store-1"}}
    assert (await notify.ok("POST", "/v1/notifications/campaigns", json=by_store))["queued"] == 1
    status, body, _ = await notify.call(
        "POST", "/v1/notifications/campaigns", json={**campaign, "key": "k2", "text": "{oops"}
    )
    assert (status, body["error"]["code"]) == (422, "invalid_template")
    status, _, _ = await notify.call(
        "POST", "/v1/notifications/campaigns", key="gw-1", json={**campaign, "key": "k3"}
    )
    assert status == 403


async def test_leap_day_birthdays_are_greeted_on_28_february(
    notify: Central, clock: ManualClock
) -> None:
    scheduler = notify.services.notify_loops.scheduler
    assert scheduler is not None
    leap = await notify.ok(
        "POST",
        "/v1/members",
        json={"name": "闰日", "phone": "13900000050", "birthday": "2000-02-29"},
    )
    at_shanghai(clock, 9, 0, day_offset=57)  # 2026-02-27, then the 28th
    assert (await scheduler.run_once()).get("birthday") == 0
    clock.advance(86400)
    assert (await scheduler.run_once()).get("birthday") == 1
    assert [r.member_id for r in await rows(notify, kind="birthday")] == [leap["id"]]


async def test_dashboard_alerts_reach_staff_through_the_senders(
    notify: Central, clock: ManualClock, sms_gateway: tuple[FakeSmsGateway, str]
) -> None:
    """The HQ dashboard's alert rules hand their messages to ``send_to``; the real path."""
    await notify.ok(
        "POST",
        "/v1/alert-rules",
        json={
            "name": "gateway offline",
            "kind": "gateway_offline",
            "threshold": 5,
            "recipients": [{"channel": "sms", "address": "13600000001"}],
        },
    )
    beat = {"kind": "heartbeat", "key": "hb-1", "payload": {}}
    await notify.ok("POST", "/v1/gateways/gw-1/outbox", "gw-1", {"items": [beat]})
    clock.advance(6 * 60)
    assert (await notify.services.alerts.evaluate())["fired"] >= 1
    await drain(notify)
    texts = [m["content"] for m in sms_gateway[0].received if m["mobile"] == "13600000001"]
    assert texts and all(t.startswith("【门店告警】") for t in texts)
    assert any("gw-1" in t for t in texts)

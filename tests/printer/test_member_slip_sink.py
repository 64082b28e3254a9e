"""The member-slip sink behind the real notifier, printing on running printer drivers."""

from __future__ import annotations

from typing import Any

from gatewayd.events import IdentifyEvent, Phase, TokenInfo, new_event_id, utc_timestamp
from gatewayd.plugins.escpos_printer import MemberSlipSink, render_member_slip
from gatewayd.protocols.tokens import Method, TokenKind
from gatewayd.sinks import Notifier
from tests.support.net import free_port

MEMBER = {
    "name": "张三",
    "phone": "13800138000",
    "level": "金卡",
    "points": 1280,
    "balance_fen": 12345,
    "card_number": "8800123456781234",
    "member_code": "96000000000000000017",
}


def event(terminal: str, phase: Phase, member: dict[str, Any] | None) -> IdentifyEvent:
    return IdentifyEvent(
        event_id=new_event_id(),
        ts=utc_timestamp(),
        store="S1",
        gateway="gw1",
        terminal=terminal,
        device="ic1",
        method=Method.IC_CARD,
        token=TokenInfo(kind=TokenKind.IC_UID, value="04A1B2C3"),
        phase=phase,
        member=member,
    )


async def publish(sink: MemberSlipSink, *events: IdentifyEvent) -> None:
    notifier = Notifier([sink])
    await notifier.start()
    for item in events:
        notifier.publish(item)
    await notifier.stop()  # drains the queue, then the sink waits for its slips


async def test_resolved_member_at_a_terminal_with_a_printer_prints_one_slip(
    start_printer: Any,
) -> None:
    harness = await start_printer(connection="dummy", width=32)
    sink = MemberSlipSink({"T1": harness.driver})
    await publish(
        sink,
        event("T1", Phase.DETECTED, None),
        event("T1", Phase.UNKNOWN, None),
        event("T2", Phase.RESOLVED, MEMBER),  # no printer at T2
        event("T1", Phase.RESOLVED, MEMBER),
    )
    slip = {key: MEMBER[key] for key in ("level", "points", "balance_fen", "member_code")}
    expected = render_member_slip(
        {**slip, "card_number": MEMBER["card_number"]}, harness.driver.opts
    )
    assert harness.driver.dummy_output == expected
    assert "张三".encode("gb18030") not in expected
    assert b"13800138000" not in expected
    assert b"8800123456781234" not in expected


async def test_member_code_stands_in_for_a_missing_card_number(start_printer: Any) -> None:
    harness = await start_printer(connection="dummy", width=32)
    member = {"level": "普通", "points": 0, "balance_fen": 0, "member_code": "96000000000000000017"}
    await publish(MemberSlipSink({"T1": harness.driver}), event("T1", Phase.RESOLVED, member))
    assert b"****0017\n" in harness.driver.dummy_output


async def test_printer_with_member_slip_off_prints_nothing(start_printer: Any) -> None:
    harness = await start_printer(connection="dummy", member_slip=False)
    await publish(MemberSlipSink({"T1": harness.driver}), event("T1", Phase.RESOLVED, MEMBER))
    assert harness.driver.dummy_output == b""


async def test_failed_slip_is_logged(start_printer: Any, logs: list[dict[str, Any]]) -> None:
    harness = await start_printer(
        connection="network", host="127.0.0.1", port=free_port(), job_timeout=0.3
    )
    resolved = event("T1", Phase.RESOLVED, MEMBER)
    await publish(MemberSlipSink({"T1": harness.driver}), resolved)
    failures = [entry for entry in logs if entry["event"] == "member_slip_failed"]
    assert len(failures) == 1
    assert failures[0]["event_id"] == resolved.event_id
    assert failures[0]["device"] == "printer1"
    assert "PrintJobFailed" in failures[0]["error"]

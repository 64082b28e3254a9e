"""The event envelope and the notifier's fan-out."""

from __future__ import annotations

import asyncio
import json

from gatewayd.events import IdentifyEvent, Phase, TokenInfo, new_event_id, utc_timestamp
from gatewayd.protocols.tokens import classify
from gatewayd.sinks import Notifier, Sink


def event(value: str = "13800138000") -> IdentifyEvent:
    return IdentifyEvent(
        event_id=new_event_id(),
        ts=utc_timestamp(),
        store="s",
        gateway="g",
        terminal="t",
        device="d",
        method="barcode",
        token=TokenInfo.from_token(classify(value)),
    )


def test_event_ids_sort_by_creation_time() -> None:
    ids = [new_event_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert [i[:10] for i in ids] == sorted(i[:10] for i in ids)


def test_copy_for_a_later_phase_serialises_afresh() -> None:
    detected = event()
    assert json.loads(detected.json_bytes)["phase"] == "detected"
    resolved = detected.model_copy(update={"phase": Phase.RESOLVED, "member": {"id": "m1"}})
    body = json.loads(resolved.json_bytes)
    assert body["phase"] == "resolved" and body["member"] == {"id": "m1"}
    assert body["event_id"] == detected.event_id
    assert detected.log_fields()["token"]["value"] == "*******8000"


class Slow(Sink):
    name = "slow"
    queue_size = 3

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.gate = asyncio.Event()

    async def handle_event(self, item: IdentifyEvent) -> None:
        await self.gate.wait()
        self.seen.append(item.token.value)


class Failing(Sink):
    name = "failing"

    async def handle_event(self, item: IdentifyEvent) -> None:
        raise RuntimeError("sink down")


class Fast(Sink):
    name = "fast"
    immediate = True

    def __init__(self) -> None:
        self.seen: list[str] = []

    def offer(self, item) -> None:
        self.seen.append(item.token.value)


async def test_slow_or_failing_sinks_never_starve_others() -> None:
    slow, fast = Slow(), Fast()
    notifier = Notifier([slow, Failing(), fast])
    await notifier.start()
    values = [f"{88000000 + n}" for n in range(10)]
    for value in values:
        notifier.publish(event(value))
    await asyncio.sleep(0.05)
    assert fast.seen == values  # delivered at once
    stats = notifier.stats()
    assert stats["failing"]["errors"] == 10
    assert stats["slow"]["dropped"] >= 6  # bounded queue: the oldest dropped and counted
    slow.gate.set()
    await notifier.stop(drain_seconds=1)
    assert slow.seen[-3:] == values[-3:]

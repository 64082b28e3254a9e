"""Sinks and the notifier that fans every event out to them (python-can's ``Notifier``).

Each sink gets its own bounded queue and task. A slow sink fills its own queue (the oldest
item is dropped and counted), a failing sink has its error logged; neither touches another
sink or the drivers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import structlog

from gatewayd.events import DeviceStatus, IdentifyEvent

Item = IdentifyEvent | DeviceStatus
log = structlog.get_logger("gatewayd.sinks")


class Sink:
    """A listener. Override ``handle_event`` and/or ``handle_status``; both default to no-op.

    A sink whose handling is a non-blocking hand-over to its own queue (MQTT, SSE) sets
    ``immediate = True`` and overrides ``offer``: the notifier then calls it synchronously,
    saving two task switches per event on the hot path.
    """

    name: str = "sink"
    queue_size: int = 1000
    immediate: bool = False

    def offer(self, item: IdentifyEvent | DeviceStatus) -> None:
        """Take an item without awaiting (only for ``immediate`` sinks). Must not block."""
        raise NotImplementedError

    async def start(self) -> None:
        """Acquire resources (connections, files) before the first item."""

    async def stop(self) -> None:
        """Release resources. Called once, after the queue drained or the drain timed out."""

    async def handle_event(self, event: IdentifyEvent) -> None:
        """Deliver one identify event. Raise to have the error logged and counted."""

    async def handle_status(self, status: DeviceStatus) -> None:
        """Deliver one device state change."""


class _SinkRunner:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.queue: deque[Item] = deque(maxlen=sink.queue_size)
        self.dropped = 0
        self.errors = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.task: asyncio.Task[None] | None = None

    def put(self, item: Item) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(item)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue:
                item = self.queue.popleft()
                try:
                    if isinstance(item, IdentifyEvent):
                        await self.sink.handle_event(item)
                    else:
                        await self.sink.handle_status(item)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one sink's failure stays its own
                    self.errors += 1
                    log.error("sink_failed", sink=self.sink.name, error=repr(exc))
            self._idle.set()

    async def drained(self) -> None:
        await self._idle.wait()


class Notifier:
    """Fans items out to every sink's queue without awaiting any of them."""

    def __init__(self, sinks: list[Sink]) -> None:
        self._immediate = [s for s in sinks if s.immediate]
        self._runners = [_SinkRunner(s) for s in sinks if not s.immediate]

    async def start(self) -> None:
        for sink in self._immediate:
            await sink.start()
        for runner in self._runners:
            await runner.sink.start()
            runner.task = asyncio.create_task(runner.run(), name=f"sink:{runner.sink.name}")

    def publish(self, item: Item) -> None:
        for sink in self._immediate:
            try:
                sink.offer(item)
            except Exception as exc:  # noqa: BLE001 - one sink's failure stays its own
                log.error("sink_failed", sink=sink.name, error=repr(exc))
        for runner in self._runners:
            runner.put(item)

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            r.sink.name: {"queued": len(r.queue), "dropped": r.dropped, "errors": r.errors}
            for r in self._runners
        }

    async def stop(self, drain_seconds: float = 3.0) -> None:
        """Drain every queue (at most ``drain_seconds``), then stop sinks in reverse order."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(r.drained() for r in self._runners)), drain_seconds
            )
        for runner in reversed(self._runners):
            if runner.task is not None:
                runner.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner.task
            await _stop_sink(runner.sink)
        for sink in reversed(self._immediate):
            await _stop_sink(sink)


async def _stop_sink(sink: Sink) -> None:
    try:
        await sink.stop()
    except Exception as exc:  # noqa: BLE001
        log.error("sink_stop_failed", sink=sink.name, error=repr(exc))

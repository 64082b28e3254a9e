"""Server-sent events: a hub that keeps the last N messages and fans them out to clients.

Each message gets an SSE id ``<boot>.<seq>``: ``boot`` is unique per gateway process. A client
reconnecting with ``Last-Event-ID`` from this process gets what it missed from the ring
buffer; one from an earlier process (the gateway restarted) gets the whole buffer.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass

from ulid import ULID

from gatewayd.events import DeviceStatus, IdentifyEvent
from gatewayd.sinks import Sink


@dataclass(frozen=True, slots=True)
class SseMessage:
    id: str
    seq: int
    event: str
    data: str
    terminal: str | None

    def encode(self) -> bytes:
        return f"id: {self.id}\nevent: {self.event}\ndata: {self.data}\n\n".encode()


class SseHub(Sink):
    """A sink that keeps a replay buffer and feeds every connected SSE client's queue."""

    name = "sse"
    immediate = True

    def __init__(self, buffer_size: int = 1000, client_queue: int = 1000) -> None:
        self.boot = str(ULID())
        self.buffer: deque[SseMessage] = deque(maxlen=buffer_size)
        self.client_queue = client_queue
        self.clients: set[asyncio.Queue[SseMessage | None]] = set()
        self.dropped = 0
        self._seq = 0

    def _add(self, event: str, data: str, terminal: str | None) -> None:
        self._seq += 1
        message = SseMessage(f"{self.boot}.{self._seq}", self._seq, event, data, terminal)
        self.buffer.append(message)
        for queue in self.clients:
            if queue.full():
                # A stuck client loses its oldest message, never the gateway's memory.
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(message)

    def offer(self, item: IdentifyEvent | DeviceStatus) -> None:
        if isinstance(item, IdentifyEvent):
            self._add("identify", item.to_json(), item.terminal)
        else:
            self._add("device", item.model_dump_json(), item.terminal)

    def add_message(self, terminal: str, payload: dict[str, object]) -> None:
        """A terminal message (from central) for SSE clients of that terminal."""
        self._add("message", json.dumps(payload, ensure_ascii=False), terminal)

    def replay_after(self, last_event_id: str | None) -> list[SseMessage]:
        if not last_event_id:
            return []
        boot, _, seq = last_event_id.partition(".")
        if boot != self.boot or not seq.isdigit():
            return list(self.buffer)
        last = int(seq)
        return [m for m in self.buffer if m.seq > last]

    def subscribe(self) -> asyncio.Queue[SseMessage | None]:
        queue: asyncio.Queue[SseMessage | None] = asyncio.Queue(self.client_queue)
        self.clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[SseMessage | None]) -> None:
        self.clients.discard(queue)

    async def stop(self) -> None:
        for queue in list(self.clients):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

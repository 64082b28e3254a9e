"""A subscriber that collects what a real broker delivers, for assertions."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiomqtt


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    def __init__(self, port: int, topics: list[str]) -> None:
        self.port = port
        self.topics = topics
        self.queue: asyncio.Queue[Received] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port) as client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self._ready.set()
                    async for message in client.messages:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes) else str(payload).encode()
                        await self.queue.put(Received(message.topic.value, data, message.retain))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    async def get(self, timeout: float = 5.0, topic_suffix: str | None = None) -> Received:
        """The next message (optionally the next whose topic ends with ``topic_suffix``)."""
        async with asyncio.timeout(timeout):
            while True:
                item = await self.queue.get()
                if topic_suffix is None or item.topic.endswith(topic_suffix):
                    return item

    async def drain(self, seconds: float = 0.2) -> list[Received]:
        out = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    out.append(await self.queue.get())
        return out


@contextlib.asynccontextmanager
async def subscribed(port: int, *topics: str) -> AsyncIterator[Subscriber]:
    sub = Subscriber(port, list(topics))
    sub._task = asyncio.create_task(sub._run())
    try:
        async with asyncio.timeout(10):
            await sub._ready.wait()
        yield sub
    finally:
        sub._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sub._task

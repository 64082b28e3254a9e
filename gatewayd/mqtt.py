"""The MQTT side: topics, the gateway's session (status with an epoch and a will), and a
sink that delivers events in order through reconnects.

Session semantics follow Sparkplug without protobuf: every connect increments ``epoch`` (kept
on disk, so it survives restarts), the will carries the same epoch, and consumers discard a
will whose epoch is older than the last ``online`` they saw. Retained topics are republished
after every reconnect, because some brokers do not persist them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import structlog

from gatewayd import __version__
from gatewayd.config import Settings
from gatewayd.events import DeviceStatus, IdentifyEvent, utc_timestamp
from gatewayd.sinks import Sink

log = structlog.get_logger("gatewayd.mqtt")
# aiomqtt warns about every pending publish beyond ten: routine while a backlog drains.
_QUIET_AIOMQTT = logging.getLogger("gatewayd.mqtt.aiomqtt")
_QUIET_AIOMQTT.setLevel(logging.ERROR)
RECONNECT_INITIAL = 0.5
RECONNECT_CAP = 30.0
BATCH = 64


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one gateway. The AsyncAPI document in docs/ describes the payloads."""

    prefix: str
    store: str
    gateway: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        return cls(settings.mqtt.topic_prefix, settings.gateway.store, settings.gateway.id)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.store}"

    @property
    def status(self) -> str:
        return f"{self.base}/gateways/{self.gateway}/status"

    @property
    def health(self) -> str:
        return f"{self.base}/gateways/{self.gateway}/health"

    def device(self, device: str) -> str:
        return f"{self.base}/gateways/{self.gateway}/devices/{device}"

    def identify(self, terminal: str) -> str:
        return f"{self.base}/terminals/{terminal}/identify"

    def messages(self, terminal: str) -> str:
        return f"{self.base}/terminals/{terminal}/messages"


class EpochStore:
    """A counter on disk that increases on every MQTT connect, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def current(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def next(self) -> int:
        value = self.current() + 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            handle.write(str(value))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        return value


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _tls_params(settings: Settings) -> aiomqtt.TLSParameters | None:
    mqtt = settings.mqtt
    if not mqtt.tls:
        return None
    return aiomqtt.TLSParameters(
        ca_certs=str(mqtt.tls_ca) if mqtt.tls_ca else None,
        certfile=str(mqtt.tls_cert) if mqtt.tls_cert else None,
        keyfile=str(mqtt.tls_key) if mqtt.tls_key else None,
        cert_reqs=ssl.CERT_NONE if mqtt.tls_insecure else ssl.CERT_REQUIRED,
    )


class MqttSink(Sink):
    """Publishes identify events and device states; holds them while the broker is away.

    Events wait in a bounded queue (``mqtt.queue_size``; when full the oldest is dropped and
    counted) and go out in order on reconnect. Delivery is at least once: a batch whose
    acknowledgements were lost is sent again, and consumers deduplicate by ``event_id``.
    """

    name = "mqtt"
    immediate = True

    def __init__(
        self,
        settings: Settings,
        *,
        epochs: EpochStore,
        on_message: Callable[[aiomqtt.Message], None] | None = None,
        subscriptions: tuple[str, ...] = (),
    ) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self.epochs = epochs
        self.queue_size = settings.mqtt.queue_size
        self.pending: deque[Outgoing] = deque(maxlen=settings.mqtt.queue_size)
        self.retained: dict[str, bytes] = {}
        self.dropped = 0
        self.published = 0
        self.connects = 0
        self.connected = False
        self.epoch = epochs.current()
        self.started = time.time()
        self._on_message = on_message
        self._subscriptions = subscriptions
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None

    # -- Sink -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt")

    def offer(self, item: IdentifyEvent | DeviceStatus) -> None:
        if isinstance(item, IdentifyEvent):
            self.enqueue(self.topics.identify(item.terminal), item.json_bytes, qos=1)
            return
        topic = self.topics.device(item.device)
        payload = item.model_dump_json().encode()
        self.retained[topic] = payload
        self.enqueue(topic, payload, qos=1, retain=True)

    async def stop(self) -> None:
        """Flush what is pending (briefly), mark the gateway offline, disconnect."""
        if self._client is not None and self.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), 2.0)
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(
                    self._client.publish(
                        self.topics.status, self._status_payload("offline"), qos=1, retain=True
                    ),
                    1.0,
                )
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- public helpers --------------------------------------------------------------------

    def enqueue(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        if len(self.pending) == self.pending.maxlen:
            self.dropped += 1
        self.pending.append(Outgoing(topic, payload, qos, retain))
        self._wake.set()

    def publish_health(self, payload: dict[str, Any]) -> None:
        self.enqueue(self.topics.health, json.dumps(payload).encode(), qos=0)

    # -- internals -------------------------------------------------------------------------

    def _status_payload(self, state: str) -> bytes:
        body: dict[str, Any] = {"state": state, "epoch": self.epoch}
        if state == "online":
            body |= {"version": __version__, "ts": utc_timestamp()}
        return json.dumps(body).encode()

    async def _drained(self) -> None:
        while self.pending:
            self._idle.clear()
            await self._idle.wait()

    async def _run(self) -> None:
        mqtt = self.settings.mqtt
        host, port = ("127.0.0.1", int(mqtt.embedded_listen.rpartition(":")[2]))
        if not mqtt.embedded:
            host, port = mqtt.host_port()
        delay = RECONNECT_INITIAL
        while True:
            self.epoch = self.epochs.next()
            will = aiomqtt.Will(self.topics.status, self._status_payload("offline"), 1, True)
            client = aiomqtt.Client(
                host,
                port,
                identifier=f"gatewayd-{self.settings.gateway.store}-{self.settings.gateway.id}",
                username=mqtt.username,
                password=mqtt.password,
                tls_params=_tls_params(self.settings),
                keepalive=mqtt.keepalive,
                will=will,
                timeout=5.0,
                clean_session=True,
                logger=_QUIET_AIOMQTT,
            )
            try:
                async with client:
                    self._client = client
                    self.connected = True
                    self.connects += 1
                    delay = RECONNECT_INITIAL
                    log.info("mqtt_connected", host=host, port=port, epoch=self.epoch)
                    await client.publish(
                        self.topics.status, self._status_payload("online"), qos=1, retain=True
                    )
                    queued = {item.topic for item in self.pending if item.retain}
                    for topic, payload in list(self.retained.items()):
                        if topic not in queued:  # a newer state is about to go out anyway
                            await client.publish(topic, payload, qos=1, retain=True)
                    for topic in self._subscriptions:
                        await client.subscribe(topic, qos=1)
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._deliver(client))
                        group.create_task(self._listen(client))
            except* aiomqtt.MqttError as group_exc:
                reason = "; ".join(str(e) for e in group_exc.exceptions)
                log.warning(
                    "mqtt_disconnected",
                    error=reason,
                    retry_in=round(delay, 2),
                    queued=len(self.pending),
                )
            finally:
                self.connected = False
                self._client = None
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(RECONNECT_CAP, delay * 2)

    async def _deliver(self, client: aiomqtt.Client) -> None:
        while True:
            if not self.pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self.pending[i] for i in range(min(BATCH, len(self.pending)))]
            if len(batch) == 1:
                item = batch[0]
                await client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
            else:
                await asyncio.gather(
                    *(client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain) for m in batch)
                )
            for item in batch:
                # The queue may have overflowed meanwhile: pop only what is still at its head.
                if self.pending and self.pending[0] is item:
                    self.pending.popleft()
            self.published += len(batch)

    async def _listen(self, client: aiomqtt.Client) -> None:
        """Consume incoming messages; ends with MqttError when the connection drops."""
        async for message in client.messages:
            if self._on_message is not None:
                try:
                    self._on_message(message)
                except Exception as exc:  # noqa: BLE001
                    log.error("mqtt_message_handler_failed", error=repr(exc))

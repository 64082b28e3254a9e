"""The gateway's link to central: resolution, store-and-forward, heartbeats.

Every ``detected`` identify event is written to the durable outbox first, then resolved
through ``POST /v1/identify`` within ``central.timeout_ms``; the gateway publishes the same
``event_id`` again as ``resolved``, ``unknown`` or ``unresolved``. The POS never waits on a
central that is down: an answer that does not come in time is ``unresolved`` (or ``resolved``
from the offline cache), and the outbox forwards the record later, in order and in batches.
Central records by ``event_id``, so a record sent twice is recorded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog

from gatewayd import __version__
from gatewayd.events import DeviceStatus, IdentifyEvent, Phase, utc_timestamp
from gatewayd.outbox import Outbox, OutboxItem
from gatewayd.payment_window import PaymentWindow
from gatewayd.protocols.tokens import PAYMENT_CODE_KINDS
from gatewayd.recent_logs import recent_errors
from gatewayd.resolution_cache import ResolutionCache
from gatewayd.sinks import Sink

if TYPE_CHECKING:
    from gatewayd.config import Settings
    from gatewayd.metrics import Metrics

log = structlog.get_logger("gatewayd.central")
RETRY_INITIAL = 0.5
RETRY_CAP = 60.0
MAX_CONCURRENT_RESOLUTIONS = 32
# Live resolutions forward their own record; the forwarder leaves young items alone so a
# record is not sent twice while its resolution is still under way.
FORWARD_GRACE = 2.0
# Central limits request bodies (64 KiB by default): batches stay below that.
MAX_BATCH_BYTES = 48 * 1024
UNKNOWN_STATUSES = {404: "unknown", 409: "already used", 410: "expired", 422: "malformed"}


class CentralUnavailable(Exception):
    """Central did not answer usefully (down, timed out, 5xx, 401/403)."""


class CentralClient:
    """A thin, typed client of the central API, authenticated with the gateway's key."""

    def __init__(self, settings: Settings) -> None:
        assert settings.central.url is not None
        self.base = settings.central.url
        self.key = settings.central.key or ""
        self.gateway = settings.gateway.id
        self._ssl: ssl.SSLContext | None = None
        if settings.central.tls_ca:
            self._ssl = ssl.create_default_context(cafile=str(settings.central.tls_ca))
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=64, ssl=self._ssl if self._ssl else True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"Authorization": f"Bearer {self.key}", "User-Agent": "gatewayd"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def stream(self, path: str, after: int) -> AsyncIterator[dict[str, Any]]:
        """Server-sent messages from ``path``, resuming after message ``after``."""
        assert self._session is not None
        try:
            async with self._session.get(
                self.base + path,
                headers={"Last-Event-ID": str(after)},
                timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=60),
            ) as response:
                if response.status != 200:
                    raise CentralUnavailable(f"channel: HTTP {response.status}")
                async for message in _sse_messages(response):
                    yield message
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CentralUnavailable(f"channel: {type(exc).__name__}: {exc}") from exc

    async def get(self, path: str, seconds: float) -> tuple[int, Any]:
        """GET JSON; raises ``CentralUnavailable`` for anything but a definite answer."""
        assert self._session is not None
        try:
            async with self._session.get(
                self.base + path, timeout=aiohttp.ClientTimeout(total=seconds)
            ) as response:
                data = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CentralUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if status >= 500 or status in (401, 403, 408, 429):
            raise CentralUnavailable(f"HTTP {status}")
        return status, data

    async def post(self, path: str, body: Any, seconds: float) -> tuple[int, Any]:
        """POST JSON; raises ``CentralUnavailable`` for anything but a definite answer."""
        assert self._session is not None
        try:
            async with self._session.post(
                self.base + path, json=body, timeout=aiohttp.ClientTimeout(total=seconds)
            ) as response:
                data = (
                    await response.json(content_type=None) if response.content_length != 0 else None
                )
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CentralUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if status >= 500 or status in (401, 403, 408, 429):
            raise CentralUnavailable(f"HTTP {status}: {data}")
        return status, data


async def _sse_messages(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif not line and data:
            message = json.loads("\n".join(data))
            data = []
            if isinstance(message, dict) and "id" in message:
                yield message


def identify_body(event: IdentifyEvent) -> dict[str, Any]:
    return {
        "token": event.token.value,
        "kind": event.token.kind.value,
        "method": event.method.value,
        "store": event.store,
        "terminal": event.terminal,
        "event_id": event.event_id,
    }


HEARTBEAT_ERRORS = 10
HEARTBEAT_ERROR_TEXT = 200


def heartbeat_errors() -> list[dict[str, Any]]:
    """The newest warnings and errors for HQ's dashboard: few, short, already masked."""
    kept = ("timestamp", "level", "event", "device", "error", "reason", "message")
    return [
        {k: str(record[k])[:HEARTBEAT_ERROR_TEXT] for k in kept if k in record}
        for record in recent_errors(HEARTBEAT_ERRORS)
    ]


class CentralLink(Sink):
    """Resolves events, forwards the outbox, sends heartbeats. One per gateway."""

    name = "central"
    immediate = True

    def __init__(
        self,
        settings: Settings,
        *,
        publish: Callable[[IdentifyEvent], None],
        health: Callable[[], dict[str, Any]],
        on_message: Callable[[dict[str, Any]], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.client = CentralClient(settings)
        state = settings.gateway.state_dir
        self.outbox = Outbox(
            state / "outbox.sqlite3",
            max_items=settings.central.outbox_max_items,
            max_age=settings.central.outbox_max_age_days * 86400,
        )
        self.cache = ResolutionCache(state, ttl=settings.central.cache_ttl_hours * 3600)
        self.window = PaymentWindow()
        self.goods_entered: dict[str, bool] = {}
        self._publish = publish
        self._health = health
        self._on_message = on_message
        self._channel_state = state / "channel.last_id"
        self._timeout = settings.central.timeout_ms / 1000
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_RESOLUTIONS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.forwarded = 0
        self.central_up = False
        self.last_identification: str | None = None
        self.metrics = metrics
        # event_id -> perf_counter at detection, for the identify latency histogram.
        self._detected_at: dict[str, float] = {}

    # -- Sink --------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.client.start()
        for coroutine in (self._forward_loop(), self._heartbeat_loop(), self._channel_loop()):
            self._spawn(coroutine)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()
        self.outbox.close()
        self.cache.close()

    def offer(self, item: IdentifyEvent | DeviceStatus) -> None:
        if isinstance(item, DeviceStatus):
            self.outbox.put(
                "device", f"device:{item.device}:{item.ts}", item.model_dump(mode="json")
            )
            self._wake.set()
            return
        if item.phase is not Phase.DETECTED:
            return
        if not self._identifies(item):
            return
        self._detected_at[item.event_id] = time.perf_counter()
        self.last_identification = utc_timestamp()
        # Durable before anything else: from here on the record cannot be lost.
        self.outbox.put("identify", item.event_id, identify_body(item))
        self._spawn(self._resolve(item))

    # -- resolution ----------------------------------------------------------------------------

    def _identifies(self, event: IdentifyEvent) -> bool:
        """A payment code scanned after goods were entered only pays, unless the terminal
        is set to identify the member then too (the seed's checkout setting)."""
        if event.token.kind not in PAYMENT_CODE_KINDS:
            return True
        if not self.goods_entered.get(event.terminal, False):
            return True
        return self.settings.terminal(event.terminal).identify_on_payment_code

    async def _resolve(self, event: IdentifyEvent) -> None:
        async with self._limit:
            try:
                status, data = await self.client.post(
                    "/v1/identify", identify_body(event), self._timeout
                )
            except CentralUnavailable as exc:
                self.central_up = False
                log.warning("resolve_unavailable", event_id=event.event_id, error=str(exc))
                self._offline(event)
                return
        self.central_up = True
        # Central answered, so it has recorded the identification under this event_id.
        self.outbox.ack_keys([event.event_id])
        if status == 200 and isinstance(data, dict):
            member = {**data.get("member", {}), "card": data.get("card")}
            self.cache.put(event.token.kind, event.token.value, member)
            self._emit(event, Phase.RESOLVED, member, "central")
            self._hold_payment_code(event, member)
        else:
            reason = UNKNOWN_STATUSES.get(status, f"HTTP {status}")
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                reason = str(data["error"].get("code", reason))
            self._emit(event, Phase.UNKNOWN, None, "central", reason)

    def _offline(self, event: IdentifyEvent) -> None:
        member = self.cache.get(event.token.kind, event.token.value)
        if member is not None:
            self._emit(event, Phase.RESOLVED, member, "cache")
        else:
            self._emit(event, Phase.UNRESOLVED, None, None)

    def _emit(
        self,
        event: IdentifyEvent,
        phase: Phase,
        member: dict[str, Any] | None,
        source: str | None,
        reason: str | None = None,
    ) -> None:
        detected_at = self._detected_at.pop(event.event_id, None)
        if self.metrics is not None and detected_at is not None:
            self.metrics.identify_latency.labels(phase.value, source or "none").observe(
                time.perf_counter() - detected_at
            )
        update: dict[str, Any] = {"phase": phase, "member": member, "source": source}
        if reason is not None:
            update["token"] = event.token.model_copy(update={"reason": reason})
        self._publish(event.model_copy(update=update))

    def _hold_payment_code(self, event: IdentifyEvent, member: dict[str, Any]) -> None:
        if event.token.kind not in PAYMENT_CODE_KINDS:
            return
        if self.goods_entered.get(event.terminal, False):
            return
        window = self.settings.terminal(event.terminal).payment_window_seconds
        if window > 0:
            self.window.hold(
                event.terminal,
                event.token.kind.value,
                event.token.value,
                event.event_id,
                member,
                window=window,
            )

    # -- store and forward ---------------------------------------------------------------------

    def _next_batch(self, limit: int) -> list[OutboxItem]:
        """The oldest items, in order, within ``limit`` items and ``MAX_BATCH_BYTES``; a live
        identification younger than ``FORWARD_GRACE`` stops the batch (its own resolution is
        recording it, and nothing may overtake it)."""
        batch: list[OutboxItem] = []
        size = 0
        now = time.time()
        for item in self.outbox.peek(limit):
            if item.kind == "identify" and now - item.created <= FORWARD_GRACE:
                break
            size += item.size + len(item.key) + 40
            if batch and size > MAX_BATCH_BYTES:
                break
            batch.append(item)
        return batch

    async def _forward_loop(self) -> None:
        delay = RETRY_INITIAL
        limit = self.settings.central.batch_size
        while True:
            self.outbox.expire()
            items = self._next_batch(limit)
            if not items:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), FORWARD_GRACE)
                continue
            body = {"items": [{"kind": i.kind, "key": i.key, "payload": i.payload} for i in items]}
            try:
                status, data = await self.client.post(
                    f"/v1/gateways/{self.settings.gateway.id}/outbox", body, 30.0
                )
            except CentralUnavailable as exc:
                self.central_up = False
                self.outbox.failed([i.id for i in items])
                log.warning(
                    "forward_failed",
                    error=str(exc),
                    backlog=self.outbox.depth,
                    retry_in=round(delay, 2),
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(RETRY_CAP, delay * 2)
                continue
            self.central_up = True
            delay = RETRY_INITIAL
            if status == 200:
                self.outbox.ack([i.id for i in items])
                self.forwarded += len(items)
            elif status == 413 and len(items) > 1:
                limit = max(1, len(items) // 2)  # central takes smaller bodies: send less
                log.warning("forward_batch_too_large", items=len(items), next_limit=limit)
            else:
                # A definite rejection of the whole batch (a bug, not an outage): keep the
                # items, log loudly, and retry slowly rather than drop records.
                log.error("forward_rejected", status=status, answer=str(data)[:300])
                self.outbox.failed([i.id for i in items])
                await asyncio.sleep(RETRY_CAP)

    async def _heartbeat_loop(self) -> None:
        while True:
            health = self._health()
            beat = {
                "ts": utc_timestamp(),
                "devices": health.get("devices", {}),
                "counters": health.get("counters", {}),
                "outbox": {"depth": self.outbox.depth, "dropped": self.outbox.dropped},
                "uptime": health.get("uptime", 0),
                "version": __version__,
                "last_identification": self.last_identification,
                "errors": heartbeat_errors(),
            }
            self.outbox.put("heartbeat", f"heartbeat:{beat['ts']}", beat)
            self._wake.set()
            await asyncio.sleep(self.settings.central.heartbeat_interval)

    # -- the channel from central --------------------------------------------------------------

    def _last_message_id(self) -> int:
        try:
            return int(self._channel_state.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _save_message_id(self, message_id: int) -> None:
        tmp = self._channel_state.with_suffix(".tmp")
        tmp.write_text(str(message_id))
        tmp.replace(self._channel_state)

    async def _channel_loop(self) -> None:
        """Hold the channel open (outbound, so stores behind NAT work) and resume after a
        drop from the last message handled."""
        delay = RETRY_INITIAL
        path = f"/v1/gateways/{self.settings.gateway.id}/channel"
        while True:
            try:
                async for message in self.client.stream(path, self._last_message_id()):
                    delay = RETRY_INITIAL
                    self._handle_message(message)
                    self._save_message_id(int(message["id"]))
            except CentralUnavailable as exc:
                log.info("channel_down", error=str(exc), retry_in=round(delay, 2))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(RETRY_CAP, delay * 2)

    def _handle_message(self, message: dict[str, Any]) -> None:
        log.info(
            "channel_message",
            id=message.get("id"),
            kind=message.get("kind"),
            terminal=message.get("terminal"),
        )
        if self._on_message is not None:
            try:
                self._on_message(message)
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the channel
                log.error("channel_message_failed", id=message.get("id"), error=repr(exc))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the POS side of the payment-code window ------------------------------------------------

    def claim(self, terminal: str) -> dict[str, Any] | None:
        held = self.window.claim(terminal)
        if held is None:
            return None
        log.info("payment_code_claimed", terminal=terminal, event_id=held.event_id)
        return held.as_claim(time.monotonic())

    def set_checkout(self, terminal: str, goods_entered: bool) -> None:
        self.goods_entered[terminal] = goods_entered

    def status(self) -> dict[str, Any]:
        return {
            "url": self.client.base,
            "reachable": self.central_up,
            "outbox": {
                "depth": self.outbox.depth,
                "dropped": self.outbox.dropped,
                "forwarded": self.forwarded,
            },
        }

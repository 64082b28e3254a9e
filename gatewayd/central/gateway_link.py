"""Central's side of the gateway link: the outbox intake and the central → gateway channel.

A gateway forwards what its durable outbox holds (identifications to record, heartbeats,
device state changes) in ordered batches. Each item carries a key (the ``event_id`` for an
identification) and is recorded at most once, so a batch resent after a crash or a lost answer
records nothing twice. An item that can never succeed (an unknown terminal, say) is answered
with its status and counts as delivered: retrying it would only block the queue behind it.

The channel is a stream of messages per store (terminal messages for every gateway of the
store; commands for one gateway), resumable from the last message id the gateway saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any, Literal

import sqlalchemy as sa
import structlog
from pydantic import Field, ValidationError

from .auth import Principal
from .clock import Clock, to_millis
from .dashboard import report_from_payload
from .db import Database
from .errors import CentralError
from .identify import Identifier
from .models import channel_messages, gateway_records, gateways
from .registry import Registry
from .schemas import Body, DeviceStatus, EntityId, Heartbeat, IdentifyRequest, Out

log = structlog.get_logger("gatewayd.central.link")
CHANNEL_BATCH = 100


class OutboxItem(Body):
    kind: Literal["identify", "heartbeat", "device"]
    key: Annotated[str, Field(min_length=1, max_length=128)]
    payload: dict[str, Any]


class OutboxBatch(Body):
    items: Annotated[list[OutboxItem], Field(min_length=1, max_length=1000)]


class ItemResult(Out):
    key: str
    status: int = Field(
        description="the item's answer; any status below 500 is final (recorded, or never "
        "recordable), so the gateway drops the item from its outbox"
    )


class OutboxResult(Out):
    results: list[ItemResult]


class ChannelMessageCreate(Body):
    terminal: EntityId | None = Field(default=None, description="for one terminal; else all")
    kind: Literal["terminal_message", "password_prompt", "service_reminder"] = "terminal_message"
    payload: dict[str, Any]


class GatewayCommand(Body):
    command: Literal["reload", "restart_device", "ping", "diagnostics"]
    args: dict[str, Any] = Field(default_factory=dict)


class MessageCreated(Out):
    id: int


class GatewayLink:
    def __init__(
        self, db: Database, clock: Clock, identifier: Identifier, registry: Registry
    ) -> None:
        self._db = db
        self._clock = clock
        self._identifier = identifier
        self._registry = registry
        self._posted = asyncio.Event()

    async def intake(
        self, gateway_id: str, principal: Principal, batch: OutboxBatch
    ) -> list[dict[str, Any]]:
        """Record a batch; answers one status per item, in the batch's order.

        Identifications are independent of each other (each keyed by its event_id), so a run
        of them is recorded concurrently and shares the identify path's group commits;
        heartbeats and device states are applied in order between such runs."""
        statuses: list[int] = []
        run: list[OutboxItem] = []
        for item in [*batch.items, None]:
            if item is not None and item.kind == "identify":
                run.append(item)
                continue
            if run:
                statuses += await asyncio.gather(
                    *(self._final_status(gateway_id, principal, i) for i in run)
                )
                run = []
            if item is not None:
                statuses.append(await self._final_status(gateway_id, principal, item))
        return [{"key": i.key, "status": s} for i, s in zip(batch.items, statuses, strict=True)]

    async def _final_status(self, gateway_id: str, principal: Principal, item: OutboxItem) -> int:
        try:
            return await self._record(gateway_id, principal, item)
        except CentralError as exc:
            if exc.status >= 500:
                raise  # not final: the gateway keeps the batch and retries
            return exc.status
        except ValidationError as exc:
            log.warning(
                "outbox_item_invalid", gateway=gateway_id, kind=item.kind, error=str(exc)[:300]
            )
            return 422

    async def _record(self, gateway_id: str, principal: Principal, item: OutboxItem) -> int:
        if item.kind == "identify":
            request = IdentifyRequest.model_validate(
                {**item.payload, "event_id": item.key}, strict=False
            )
            outcome = await self._identifier.identify(request, principal)
            return outcome.status
        if item.kind == "heartbeat":
            devices = item.payload.get("devices", {})
            beat = Heartbeat(
                devices=[
                    DeviceStatus(id=name, state=state) for name, state in dict(devices).items()
                ],
                counters={k: int(v) for k, v in dict(item.payload.get("counters", {})).items()},
                version=item.payload.get("version"),
            )
            report = report_from_payload(item.payload)
            await self._registry.record_heartbeat(gateway_id, beat, report)
            return 200
        async with self._db.write() as conn:
            await conn.execute(
                self._db.insert_ignore(gateway_records).values(
                    gateway_id=gateway_id,
                    kind=item.kind,
                    key=item.key,
                    payload=json.dumps(item.payload, ensure_ascii=False)[:20000],
                    received_at=to_millis(self._clock.now()),
                )
            )
        return 200

    async def post_message(
        self,
        store_id: str,
        gateway_id: str | None,
        terminal: str | None,
        kind: str,
        payload: dict[str, Any],
    ) -> int:
        async with self._db.write() as conn:
            result = await conn.execute(
                channel_messages.insert()
                .values(
                    store_id=store_id,
                    gateway_id=gateway_id,
                    terminal_id=terminal,
                    kind=kind,
                    payload=json.dumps(payload, ensure_ascii=False),
                    created_at=to_millis(self._clock.now()),
                )
                .returning(channel_messages.c.id)
            )
            message_id = int(result.scalar_one())
        self._posted.set()
        self._posted = asyncio.Event()
        return message_id

    async def store_of(self, gateway_id: str) -> str:
        async with self._db.read() as conn:
            store = (
                await conn.execute(
                    sa.select(gateways.c.store_id).where(gateways.c.id == gateway_id)
                )
            ).scalar()
        if store is None:
            from .errors import NotFound

            raise NotFound(f"no gateway {gateway_id}", code="gateway_not_found")
        return str(store)

    async def messages_after(
        self, store_id: str, gateway_id: str, after: int
    ) -> list[dict[str, Any]]:
        query = (
            sa.select(channel_messages)
            .where(channel_messages.c.store_id == store_id)
            .where(channel_messages.c.id > after)
            .where(
                sa.or_(
                    channel_messages.c.gateway_id.is_(None),
                    channel_messages.c.gateway_id == gateway_id,
                )
            )
            .order_by(channel_messages.c.id)
            .limit(CHANNEL_BATCH)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            {
                "id": r.id,
                "kind": r.kind,
                "terminal": r.terminal_id,
                "payload": json.loads(r.payload),
            }
            for r in rows
        ]

    async def wait_for_post(self, seconds: float) -> None:
        """Until a message is posted in this process, or ``seconds`` (other workers post
        too: the caller polls the table after each wait)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._posted.wait(), seconds)

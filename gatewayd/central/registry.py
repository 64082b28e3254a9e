"""Stores, terminals, gateways (with their keys and heartbeats) and chain-wide settings."""

from __future__ import annotations

import json
from typing import Any, Final

import sqlalchemy as sa

from .auth import store_key
from .clock import Clock, iso, to_millis
from .dashboard import HealthReport, HeartbeatWriter, report_from_heartbeat
from .db import Database
from .errors import Conflict, Invalid, NotFound
from .logs import get_logger
from .models import chain_settings, gateways, stores, terminals
from .schemas import GatewayCreate, Heartbeat, StoreCreate, TerminalCreate

log = get_logger(__name__)
SETTING_DEFAULTS: Final[dict[str, Any]] = {"allow_legacy_card_numbers": False}
TERMINAL_CACHE_SECONDS: Final = 30.0


def _store_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "address": row.address,
        "created_at": iso(row.created_at),
    }


def _terminal_out(row: Any) -> dict[str, Any]:
    return {
        "store": row.store_id,
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "created_at": iso(row.created_at),
    }


class Registry:
    """The chain's stores, their terminals and gateways; HQ's view of gateway health."""

    def __init__(self, db: Database, clock: Clock, stale_after: float) -> None:
        self._db = db
        self._clock = clock
        self._stale_after_ms = to_millis(stale_after)
        self._known_terminals: dict[tuple[str, str], float] = {}
        self._heartbeats = HeartbeatWriter(db, self._stale_after_ms)

    # --- stores and terminals ------------------------------------------------------------

    async def create_store(self, data: StoreCreate) -> dict[str, Any]:
        now = to_millis(self._clock.now())
        try:
            async with self._db.write() as conn:
                await conn.execute(
                    stores.insert().values(
                        id=data.id, name=data.name, address=data.address, created_at=now
                    )
                )
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"store {data.id} exists", code="store_exists") from exc
        log.info("store_created", store=data.id)
        return await self.get_store(data.id)

    async def get_store(self, store_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (await conn.execute(sa.select(stores).where(stores.c.id == store_id))).first()
        if row is None:
            raise NotFound(f"no store {store_id}", code="store_not_found")
        return _store_out(row)

    async def list_stores(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = (await conn.execute(sa.select(stores).order_by(stores.c.id))).all()
        return [_store_out(r) for r in rows]

    async def create_terminal(self, store_id: str, data: TerminalCreate) -> dict[str, Any]:
        await self.get_store(store_id)
        try:
            async with self._db.write() as conn:
                await conn.execute(
                    terminals.insert().values(
                        store_id=store_id,
                        id=data.id,
                        name=data.name,
                        kind=data.kind,
                        created_at=to_millis(self._clock.now()),
                    )
                )
                row = (
                    await conn.execute(
                        sa.select(terminals).where(
                            terminals.c.store_id == store_id, terminals.c.id == data.id
                        )
                    )
                ).one()
        except sa.exc.IntegrityError as exc:
            raise Conflict(
                f"terminal {data.id} exists in {store_id}", code="terminal_exists"
            ) from exc
        return _terminal_out(row)

    async def list_terminals(self, store_id: str) -> list[dict[str, Any]]:
        await self.get_store(store_id)
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(terminals)
                    .where(terminals.c.store_id == store_id)
                    .order_by(terminals.c.id)
                )
            ).all()
        return [_terminal_out(r) for r in rows]

    def terminal_known(self, store_id: str, terminal_id: str) -> bool:
        """Whether the terminal was found in the store lately (``require_terminal``'s cache):
        identify checks this first and awaits nothing when it holds."""
        seen = self._known_terminals.get((store_id, terminal_id))
        return seen is not None and self._clock.now() - seen < TERMINAL_CACHE_SECONDS

    async def require_terminal(self, store_id: str, terminal_id: str) -> None:
        """422 unless the terminal is registered in the store (positive answers cached)."""
        if self.terminal_known(store_id, terminal_id):
            return
        async with self._db.read() as conn:
            found = await conn.scalar(
                sa.select(terminals.c.id).where(
                    terminals.c.store_id == store_id, terminals.c.id == terminal_id
                )
            )
        if found is None:
            raise Invalid(
                f"terminal {terminal_id} is not registered in store {store_id}",
                code="unknown_terminal",
            )
        if len(self._known_terminals) > 100_000:
            self._known_terminals.clear()
        self._known_terminals[(store_id, terminal_id)] = self._clock.now()

    # --- gateways ------------------------------------------------------------------------

    def _gateway_out(self, row: Any) -> dict[str, Any]:
        status = json.loads(row.status) if row.status else {}
        now = to_millis(self._clock.now())
        if row.last_seen_at is None:
            state = "never_seen"
        elif now - row.last_seen_at > self._stale_after_ms:
            state = "stale"
        else:
            state = "online"
        return {
            "id": row.id,
            "store": row.store_id,
            "name": row.name,
            "created_at": iso(row.created_at),
            "last_seen_at": iso(row.last_seen_at),
            "state": state,
            "stale": state != "online",
            "devices": status.get("devices", []),
            "counters": status.get("counters", {}),
            "version": status.get("version"),
        }

    async def create_gateway(self, data: GatewayCreate) -> tuple[dict[str, Any], str]:
        """Register a gateway and its API key; returns (gateway, key shown once)."""
        await self.get_store(data.store)
        try:
            async with self._db.write() as conn:
                await conn.execute(
                    gateways.insert().values(
                        id=data.id,
                        store_id=data.store,
                        name=data.name,
                        created_at=to_millis(self._clock.now()),
                    )
                )
                _, key = await store_key(
                    conn, "gateway", f"gateway {data.id}", self._clock, gateway_id=data.id
                )
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"gateway {data.id} exists", code="gateway_exists") from exc
        log.info("gateway_created", gateway=data.id, store=data.store)
        return await self.get_gateway(data.id), key

    async def get_gateway(self, gateway_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(gateways).where(gateways.c.id == gateway_id))
            ).first()
        if row is None:
            raise NotFound(f"no gateway {gateway_id}", code="gateway_not_found")
        return self._gateway_out(row)

    async def list_gateways(self, store_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(gateways).order_by(gateways.c.id)
        if store_id is not None:
            query = query.where(gateways.c.store_id == store_id)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [self._gateway_out(r) for r in rows]

    async def heartbeat(
        self, gateway_id: str, beat: Heartbeat, report: HealthReport | None = None
    ) -> dict[str, Any]:
        """Record a heartbeat and answer the gateway's state (the HTTP heartbeat)."""
        await self.record_heartbeat(gateway_id, beat, report)
        return await self.get_gateway(gateway_id)

    async def record_heartbeat(
        self, gateway_id: str, beat: Heartbeat, report: HealthReport | None = None
    ) -> None:
        """Record a heartbeat; ``report`` carries what only outbox heartbeats have (uptime,
        backlog, recent errors…) for the dashboard (``dashboard.record_health``).

        Written in batches with other gateways' heartbeats (``dashboard.HeartbeatWriter``)."""
        status = json.dumps(
            {
                "devices": [d.model_dump(exclude_none=True) for d in beat.devices],
                "counters": beat.counters,
                "version": beat.version,
            }
        )
        now = to_millis(self._clock.now())
        await self._heartbeats.record(
            gateway_id, status, report or report_from_heartbeat(beat), now
        )

    # --- chain settings ------------------------------------------------------------------

    async def settings(self) -> dict[str, Any]:
        async with self._db.read() as conn:
            rows = (await conn.execute(sa.select(chain_settings))).all()
        values = dict(SETTING_DEFAULTS)
        values.update({r.key: json.loads(r.value) for r in rows if r.key in SETTING_DEFAULTS})
        return values

    async def update_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        async with self._db.write() as conn:
            for key, value in changes.items():
                if key not in SETTING_DEFAULTS or value is None:
                    continue
                stmt = self._db.insert_ignore(chain_settings).values(
                    key=key, value=json.dumps(value)
                )
                await conn.execute(stmt)
                await conn.execute(
                    chain_settings.update()
                    .where(chain_settings.c.key == key)
                    .values(value=json.dumps(value))
                )
        log.info("settings_updated", changes=sorted(changes))
        return await self.settings()

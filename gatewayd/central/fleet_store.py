"""Central's part in fleet operations: keep signed bundles, relay them, record what happened.

Central never signs and never holds a private key: it checks a bundle's shape and targets
(``gatewayd.fleet.read_bundle``), stores it as uploaded, and posts an ``apply_bundle`` command
on the channel of every gateway it is for. Each gateway fetches the bundle, verifies it itself
and reports the outcome (``applied``, ``rolled_back`` or ``rejected`` with a reason), which is
what HQ lists. Command results (``restart_device``…) and diagnostics bundles are kept the same
way, per gateway.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from gatewayd.fleet import BundleRejected, read_bundle

from .clock import Clock, iso, to_millis
from .db import Database
from .errors import Invalid, NotFound
from .models import channel_messages, gateways
from .models_fleet import (
    fleet_bundles,
    fleet_command_results,
    fleet_deliveries,
    fleet_diagnostics,
)

LIST_LIMIT = 100
OUTCOMES = ("applied", "rolled_back", "rejected")


class FleetStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # -- bundles ----------------------------------------------------------------------------

    async def _gateways(
        self, *, gateway_id: str | None = None, store_id: str | None = None
    ) -> list[tuple[str, str]]:
        query = sa.select(gateways.c.id, gateways.c.store_id).order_by(gateways.c.id)
        if gateway_id is not None:
            query = query.where(gateways.c.id == gateway_id)
        if store_id is not None:
            query = query.where(gateways.c.store_id == store_id)
        async with self._db.read() as conn:
            return [(r.id, r.store_id) for r in (await conn.execute(query)).all()]

    async def submit(
        self, raw: dict[str, Any], *, gateway_id: str | None = None, store_id: str | None = None
    ) -> dict[str, Any]:
        """Store a bundle and post it to every gateway it targets within the given scope
        (one gateway, a store's gateways, or the whole chain)."""
        try:
            bundle, _manifest, _signature = read_bundle(raw)
        except BundleRejected as exc:
            raise Invalid(exc.message, code=f"bundle_{exc.reason}") from None
        candidates = await self._gateways(gateway_id=gateway_id, store_id=store_id)
        if gateway_id is not None and not candidates:
            raise NotFound(f"no gateway {gateway_id}", code="gateway_not_found")
        targets = [(g, s) for g, s in candidates if bundle.targets(g, s)]
        if not targets:
            raise Invalid("the bundle's targets name none of these gateways", code="no_target")
        now = to_millis(self._clock.now())
        body = json.dumps(raw, separators=(",", ":"))
        async with self._db.write() as conn:
            bundle_id = (
                await conn.execute(
                    fleet_bundles.insert()
                    .values(
                        serial=bundle.serial,
                        key_id=bundle.key_id,
                        manifest=json.dumps(bundle.manifest),
                        body=body,
                        size=len(body),
                        created_at=now,
                    )
                    .returning(fleet_bundles.c.id)
                )
            ).scalar_one()
            for gateway, store in targets:
                # The channel polls its table, so a message inserted here goes out within
                # a second, in the same transaction as the delivery that tracks it.
                message_id = (
                    await conn.execute(
                        channel_messages.insert()
                        .values(
                            store_id=store,
                            gateway_id=gateway,
                            terminal_id=None,
                            kind="command",
                            payload=json.dumps(
                                {"command": "apply_bundle", "args": {"bundle_id": bundle_id}}
                            ),
                            created_at=now,
                        )
                        .returning(channel_messages.c.id)
                    )
                ).scalar_one()
                await conn.execute(
                    fleet_deliveries.insert().values(
                        bundle_id=bundle_id,
                        gateway_id=gateway,
                        message_id=message_id,
                        status="pending",
                        created_at=now,
                        updated_at=now,
                    )
                )
        return await self.bundle(int(bundle_id))

    async def bundle(self, bundle_id: int) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(fleet_bundles).where(fleet_bundles.c.id == bundle_id))
            ).first()
            if row is None:
                raise NotFound(f"no bundle {bundle_id}", code="bundle_not_found")
            deliveries = (
                await conn.execute(
                    sa.select(fleet_deliveries)
                    .where(fleet_deliveries.c.bundle_id == bundle_id)
                    .order_by(fleet_deliveries.c.gateway_id)
                )
            ).all()
        return self._bundle_out(row, deliveries)

    def _bundle_out(self, row: Any, deliveries: Sequence[Any]) -> dict[str, Any]:
        manifest = json.loads(row.manifest)
        return {
            "id": row.id,
            "serial": row.serial,
            "key_id": row.key_id,
            "size": row.size,
            "targets": manifest["targets"],
            "files": manifest["files"],
            "created_at": iso(row.created_at),
            "deliveries": [self._delivery_out(d) for d in deliveries],
        }

    @staticmethod
    def _delivery_out(row: Any) -> dict[str, Any]:
        return {
            "bundle_id": row.bundle_id,
            "gateway_id": row.gateway_id,
            "message_id": row.message_id,
            "status": row.status,
            "reason": row.reason,
            "message": row.message,
            "updated_at": iso(row.updated_at),
        }

    async def bundles(self) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(fleet_bundles).order_by(fleet_bundles.c.id.desc()).limit(LIST_LIMIT)
                )
            ).all()
            ids = [r.id for r in rows]
            deliveries = (
                await conn.execute(
                    sa.select(fleet_deliveries)
                    .where(fleet_deliveries.c.bundle_id.in_(ids))
                    .order_by(fleet_deliveries.c.gateway_id)
                )
            ).all()
        return [self._bundle_out(r, [d for d in deliveries if d.bundle_id == r.id]) for r in rows]

    async def deliveries(self, gateway_id: str) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(fleet_deliveries)
                    .where(fleet_deliveries.c.gateway_id == gateway_id)
                    .order_by(fleet_deliveries.c.id.desc())
                    .limit(LIST_LIMIT)
                )
            ).all()
        return [self._delivery_out(r) for r in rows]

    async def content_for(self, gateway_id: str, bundle_id: int) -> dict[str, Any]:
        """The bundle as uploaded, for a gateway it was delivered to."""
        query = (
            sa.select(fleet_bundles.c.body)
            .join(fleet_deliveries, fleet_deliveries.c.bundle_id == fleet_bundles.c.id)
            .where(fleet_bundles.c.id == bundle_id)
            .where(fleet_deliveries.c.gateway_id == gateway_id)
        )
        async with self._db.read() as conn:
            body = (await conn.execute(query)).scalar()
        if body is None:
            raise NotFound(f"no bundle {bundle_id} for {gateway_id}", code="bundle_not_found")
        result: dict[str, Any] = json.loads(body)
        return result

    async def record_outcome(
        self, gateway_id: str, bundle_id: int, status: str, reason: str | None, message: str | None
    ) -> dict[str, Any]:
        """What the gateway did with the bundle; a resent report just overwrites the same."""
        async with self._db.write() as conn:
            updated = await conn.execute(
                fleet_deliveries.update()
                .where(fleet_deliveries.c.bundle_id == bundle_id)
                .where(fleet_deliveries.c.gateway_id == gateway_id)
                .values(
                    status=status,
                    reason=reason,
                    message=(message or None) and message[:2000],
                    updated_at=to_millis(self._clock.now()),
                )
            )
            if updated.rowcount == 0:
                raise NotFound(f"no bundle {bundle_id} for {gateway_id}", code="bundle_not_found")
        deliveries = [d for d in await self.deliveries(gateway_id) if d["bundle_id"] == bundle_id]
        return deliveries[0]

    # -- command results and diagnostics ---------------------------------------------------------

    async def record_result(
        self, gateway_id: str, message_id: int | None, command: str, ok: bool, result: Any
    ) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                fleet_command_results.insert().values(
                    gateway_id=gateway_id,
                    message_id=message_id,
                    command=command,
                    ok=ok,
                    result=json.dumps(result, ensure_ascii=False)[:20000],
                    received_at=to_millis(self._clock.now()),
                )
            )

    async def results(self, gateway_id: str) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(fleet_command_results)
                    .where(fleet_command_results.c.gateway_id == gateway_id)
                    .order_by(fleet_command_results.c.id.desc())
                    .limit(LIST_LIMIT)
                )
            ).all()
        return [
            {
                "id": r.id,
                "message_id": r.message_id,
                "command": r.command,
                "ok": r.ok,
                "result": json.loads(r.result),
                "received_at": iso(r.received_at),
            }
            for r in rows
        ]

    async def store_diagnostics(
        self, gateway_id: str, body: dict[str, Any], request_id: int | None
    ) -> int:
        text = json.dumps(body)  # ASCII: free-form text with lone surrogates stays storable
        async with self._db.write() as conn:
            new_id = (
                await conn.execute(
                    fleet_diagnostics.insert()
                    .values(
                        gateway_id=gateway_id,
                        request_id=request_id,
                        size=len(text.encode()),
                        body=text,
                        received_at=to_millis(self._clock.now()),
                    )
                    .returning(fleet_diagnostics.c.id)
                )
            ).scalar_one()
        return int(new_id)

    async def diagnostics(self, gateway_id: str) -> list[dict[str, Any]]:
        columns = [c for c in fleet_diagnostics.c if c.name != "body"]
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(*columns)
                    .where(fleet_diagnostics.c.gateway_id == gateway_id)
                    .order_by(fleet_diagnostics.c.id.desc())
                    .limit(LIST_LIMIT)
                )
            ).all()
        return [
            {
                "id": r.id,
                "request_id": r.request_id,
                "size": r.size,
                "received_at": iso(r.received_at),
            }
            for r in rows
        ]

    async def diagnostics_bundle(self, gateway_id: str, diagnostics_id: int) -> dict[str, Any]:
        async with self._db.read() as conn:
            body = (
                await conn.execute(
                    sa.select(fleet_diagnostics.c.body)
                    .where(fleet_diagnostics.c.id == diagnostics_id)
                    .where(fleet_diagnostics.c.gateway_id == gateway_id)
                )
            ).scalar()
        if body is None:
            raise NotFound(f"no diagnostics {diagnostics_id}", code="diagnostics_not_found")
        result: dict[str, Any] = json.loads(body)
        return result

"""The scheduler that pays recharge returns when due and expires passes, in every process.

Separate from ``recharge.py`` because it is a background loop, not a request: each central
process (``--workers N`` means N of them) runs one, and each due bonus is claimed by one
conditional UPDATE (``paid_at IS NULL``), so a return is paid exactly once however many
schedulers race for it. A failed round is logged and the next one runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import sqlalchemy as sa

from . import ledger
from .clock import Clock, to_millis
from .db import Database
from .logs import get_logger
from .member_events import MemberEvent, MemberEvents
from .models_programme import scheduled_bonuses
from .passes import PassService

# The events keep the logger name they had before this module was split out of recharge.py.
log = get_logger("gatewayd.central.recharge")
SCHEDULER_INTERVAL: Final = 30.0
BATCH: Final = 500


class BonusScheduler:
    """Pays due returns and expires passes; one per central process, safe to run in many."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        events: MemberEvents,
        passes: PassService,
        interval: float = SCHEDULER_INTERVAL,
    ) -> None:
        self._db = db
        self._clock = clock
        self._events = events
        self._passes = passes
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def pay_due(self, limit: int = BATCH) -> int:
        """Pay every return due by now (up to ``limit``); returns how many this call paid."""
        now = to_millis(self._clock.now())
        async with self._db.read() as conn:
            due = (
                await conn.scalars(
                    sa.select(scheduled_bonuses.c.id)
                    .where(scheduled_bonuses.c.paid_at.is_(None), scheduled_bonuses.c.due_at <= now)
                    .order_by(scheduled_bonuses.c.due_at, scheduled_bonuses.c.id)
                    .limit(limit)
                )
            ).all()
        paid = 0
        for bonus_id in due:
            async with self._db.write() as conn:
                won = (
                    await conn.execute(
                        scheduled_bonuses.update()
                        .where(
                            scheduled_bonuses.c.id == bonus_id,
                            scheduled_bonuses.c.paid_at.is_(None),
                        )
                        .values(paid_at=now)
                        .returning(*scheduled_bonuses.c)
                    )
                ).first()
                if won is None:
                    continue  # another scheduler paid it
                posted = await ledger.post(
                    conn,
                    member_id=won.member_id,
                    store=won.store_id,
                    account="stored_value",
                    amount=won.amount_fen,
                    kind="recharge_bonus",
                    now=now,
                    ref=f"bonus:{bonus_id}",
                )
                await conn.execute(
                    scheduled_bonuses.update()
                    .where(scheduled_bonuses.c.id == bonus_id)
                    .values(entry_id=posted.entry_id)
                )
                await self._events.emit(
                    conn,
                    MemberEvent(
                        kind="recharge_bonus_paid",
                        member_id=won.member_id,
                        key=f"bonus:{bonus_id}",
                        store_id=won.store_id,
                        data={
                            "amount_fen": won.amount_fen,
                            "bonus_fen": won.amount_fen,
                            "period": won.period,
                            "recharge_id": won.recharge_id,
                            "balance_fen": posted.balance_after,
                        },
                    ),
                )
                paid += 1
        if paid:
            log.info("recharge_bonuses_paid", count=paid)
        return paid

    async def run_once(self) -> dict[str, int]:
        """One round: returns due, then passes past expiry."""
        return {"bonuses": await self.pay_due(), "passes": await self._passes.expire_due()}

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad round must not stop the next one
                log.exception("scheduler_round_failed")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Start the background loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop; a round in progress is cancelled (its transaction rolls back)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

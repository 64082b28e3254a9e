"""Member events: what happened to a member, told to whoever must react, in the same transaction.

The programme (orders, recharges, upgrades) emits; notifications subscribe and write their
outbox rows on the emitter's connection, so a message exists exactly when the change that
caused it was committed: a rolled-back order sends no SMS, a committed one cannot lose it.
Subscribers must only write through ``conn`` (no I/O of their own): delivery happens later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from .logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class MemberEvent:
    """One fact about one member.

    ``kind`` names the fact (``registered``, ``points_earned``, ``stored_value_debited``,
    ``recharged``, ``level_upgraded``, ``points_redeemable``, ``service_due``, ...);
    ``key`` is unique per fact, so a retried request that emits again is recognised;
    ``data`` holds what a message template may show (amounts in fen, never secrets).
    """

    kind: str
    member_id: int
    key: str
    store_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


Subscriber = Callable[[AsyncConnection, MemberEvent], Awaitable[None]]


class MemberEvents:
    """Fan-out of member events to subscribers, inside the emitter's transaction."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def emit(self, conn: AsyncConnection, event: MemberEvent) -> None:
        """Call every subscriber; an exception rolls the emitter's transaction back."""
        log.debug("member_event", kind=event.kind, member_id=event.member_id)
        for subscriber in self._subscribers:
            await subscriber(conn, event)

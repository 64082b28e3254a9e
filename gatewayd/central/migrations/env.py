"""Alembic environment: runs on a connection handed over by ``gatewayd central migrate``.

``gatewayd.central.migrate`` passes a live (sync-facing) connection in
``config.attributes["connection"]``; without one (plain ``alembic`` with a URL) this file
opens its own async engine.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context

from gatewayd.central.db import create_engine
from gatewayd.central.models import metadata

config = context.config


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)
else:
    asyncio.run(_run_standalone(config.get_main_option("sqlalchemy.url") or ""))

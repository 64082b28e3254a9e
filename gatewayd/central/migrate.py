"""Schema migrations through Alembic, run on central's own engine (both backends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .db import Database

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    """An Alembic config pointing at the migrations shipped inside the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The newest revision this code knows (several heads, if any, joined by commas).

    Feature migrations may branch from the same parent; the database is current when it is
    at every head, and ``upgrade`` brings it to all of them.
    """
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert heads
    return ",".join(sorted(heads))


async def upgrade(db: Database, revision: str = "heads") -> None:
    """Bring the schema up to ``revision`` in one transaction."""

    def run(sync_conn: Any) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with db.write() as conn:
        await conn.run_sync(run)


async def current_revision(db: Database) -> str | None:
    """The revision the database is at (heads joined by commas), or None when empty."""
    async with db.read() as conn:
        heads = await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_heads()
        )
    return ",".join(sorted(heads)) or None

"""Schema migrations through Alembic, driven from Relay's own settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from relay.errors import SettingsError
from relay.storage.database import Database

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(url: str) -> None:
    """Bring the schema to the newest revision (Alembic runs its own event loop in a thread)."""
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""


async def current_revision(database: Database) -> str | None:
    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with database.read() as connection:
        return await connection.run_sync(read)


async def require_current_schema(database: Database) -> None:
    """Refuse to serve on a schema older or newer than this code's."""
    current, head = await current_revision(database), head_revision()
    if current != head:
        raise SettingsError(
            f"RELAY_DATABASE_URL: schema is at revision {current or 'none'}, this Relay needs {head}; "
            "run `relay db upgrade`"
        )

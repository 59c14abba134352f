"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from relay.storage.migrate import head_revision
from relay.storage.tables import metadata
from tests.support.harness import Relay


def differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, metadata)


async def test_the_migrated_schema_matches_the_tables(relay: Relay) -> None:
    async with relay.runtime.database.read() as connection:
        assert await connection.run_sync(differences) == []
        revision = await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    assert revision == head_revision()

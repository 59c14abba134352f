"""`relay db upgrade` / `relay db current`: schema migrations."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from relay.cli.options import settings_from
from relay.runtime import prepare_data_dir
from relay.storage.database import open_database
from relay.storage.migrate import current_revision, head_revision, upgrade


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser("db", help="database schema")
    actions = parser.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    actions.add_parser("upgrade", help="migrate the schema to this version of Relay").set_defaults(run=run_upgrade)
    actions.add_parser("current", help="print the schema revision").set_defaults(run=run_current)


def run_upgrade(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    prepare_data_dir(settings)

    async def work() -> None:
        database = await open_database(settings.effective_database_url)
        await database.close()
        await upgrade(settings.effective_database_url)

    asyncio.run(work())
    print(f"schema at revision {head_revision()}")
    return 0


def run_current(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    prepare_data_dir(settings)

    async def work() -> str | None:
        database = await open_database(settings.effective_database_url)
        try:
            return await current_revision(database)
        finally:
            await database.close()

    print(asyncio.run(work()) or "none")
    return 0

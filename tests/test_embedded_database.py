"""The embedded database file: what the server writes reaches it while the server runs."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from relay.auth.principal import Role
from tests.support.harness import Relay

WAIT_SECONDS = 10.0


async def test_written_rows_reach_the_database_file_itself_while_the_server_runs(relay: Relay) -> None:
    """Commits leave the write-ahead log to the server's background checkpoint, which copies it
    into relay.db within seconds, so a copy of that file (a backup) holds what was just written."""
    settings = relay.runtime.settings
    if settings.database_url:
        pytest.skip("the embedded SQLite database only")
    database_file = Path(settings.effective_database_url.split("///", 1)[1])
    username = f"wal-{secrets.token_hex(6)}"
    await relay.account(username, Role.CLINICIAN, login=False)
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while username.encode() not in database_file.read_bytes():
        assert asyncio.get_running_loop().time() < deadline, "the new row never left the write-ahead log"
        await asyncio.sleep(0.2)

"""Fixtures: each test that uses ``relay`` runs once per backend (embedded, scale-out)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from relay.settings import Settings, load_settings
from relay.storage.migrate import upgrade
from tests.support.backends import (
    BACKENDS,
    POSTGRES_URL,
    REDIS_URL,
    clear_redis_namespace,
    drop_postgres_schema,
    reset_postgres,
)
from tests.support.clock import ManualClock
from tests.support.harness import Relay, free_port, running_relay

SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="session")
def postgres_schema() -> None:
    """Migrate the test database once per run, from an empty schema."""
    if "scaleout" not in BACKENDS:
        return

    async def prepare() -> None:
        await drop_postgres_schema()
        await upgrade(POSTGRES_URL)

    asyncio.run(prepare())


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_settings(backend: str, tmp_path: Path, postgres_schema: None) -> AsyncIterator[SettingsFactory]:
    namespace = f"t{secrets.token_hex(6)}"
    if backend == "scaleout":
        await reset_postgres()

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path / "data", "port": free_port()}
        if backend == "scaleout":
            values |= {"database_url": POSTGRES_URL, "redis_url": REDIS_URL, "redis_namespace": namespace}
        return load_settings(values | overrides, environ={})

    yield factory
    if backend == "scaleout":
        await clear_redis_namespace(namespace)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def relay(make_settings: SettingsFactory, clock: ManualClock) -> AsyncIterator[Relay]:
    async with running_relay(make_settings(), clock) as running:
        yield running

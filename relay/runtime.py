"""The running Relay: every long-lived object, built once from the settings and passed down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from relay.accounts.service import AccountService
from relay.audit.log import AuditLog
from relay.audit.reader import AuditReader
from relay.auth.integrations import TOKEN_PATH, IntegrationService
from relay.auth.login import LoginService
from relay.auth.second_factor import SecondFactorService
from relay.auth.sessions import SessionService
from relay.broker.contract import Broker
from relay.broker.memory import MemoryBroker
from relay.broker.redis import RedisBroker
from relay.camera.service import Camera, build_camera
from relay.camera.spool.contract import Spool
from relay.camera.spool.filesystem import FilesystemSpool
from relay.camera.spool.redis import RedisSpool
from relay.clock import Clock
from relay.ephemeral.contract import EphemeralStore
from relay.ephemeral.memory import MemoryEphemeralStore
from relay.ephemeral.redis import RedisEphemeralStore
from relay.errors import SettingsError
from relay.keys.devices import DeviceService
from relay.keys.keyring import Keyring
from relay.messaging.service import Messaging, build_messaging
from relay.metrics import Metrics
from relay.portal.service import Portal, open_portal
from relay.redis_connection import open_redis
from relay.settings import Settings
from relay.storage.database import Database, open_database
from relay.storage.migrate import require_current_schema, upgrade

READY_TIMEOUT = 3.0


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    database: Database
    redis: Redis | None
    broker: Broker
    ephemeral: EphemeralStore
    spool: Spool
    keyring: Keyring
    metrics: Metrics
    audit: AuditLog
    audit_reader: AuditReader
    sessions: SessionService
    accounts: AccountService
    login: LoginService
    second_factor: SecondFactorService
    integrations: IntegrationService
    devices: DeviceService
    camera: Camera
    messaging: Messaging
    portal: Portal

    async def checkpoint(self) -> None:
        """Make what was committed durable: first the message ciphertext the spool wrote
        unsynced, then the database's log (whose checkpoint syncs the rows naming it), so a
        row never reaches the disk at a checkpoint before its ciphertext."""
        await self.spool.sync()
        await self.database.checkpoint()

    async def ready(self) -> dict[str, str]:
        """Each backend's state ("ok" or the error class), for /readyz; a silent backend times out."""
        probes: dict[str, Callable[[], Awaitable[object]]] = {"database": self.database.ping}
        if self.redis is not None:
            probes["redis"] = self.redis.ping
        checks: dict[str, str] = {}
        for name, probe in probes.items():
            try:
                await asyncio.wait_for(probe(), timeout=READY_TIMEOUT)
                checks[name] = "ok"
            except Exception as error:
                checks[name] = type(error).__name__
        return checks


def prepare_data_dir(settings: Settings) -> None:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise SettingsError(f"RELAY_DATA_DIR: cannot create {settings.data_dir}: {error.strerror}") from None


def open_filesystem_spool(settings: Settings, clock: Clock) -> FilesystemSpool:
    try:
        return FilesystemSpool(settings.effective_spool_dir, clock)
    except OSError as error:
        name = "RELAY_SPOOL_DIR" if settings.spool_dir else "RELAY_DATA_DIR"
        raise SettingsError(f"{name}: cannot create {settings.effective_spool_dir}: {error.strerror}") from None


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, clock: Clock) -> AsyncIterator[Runtime]:
    """Connect to every backend (failing with an actionable SettingsError) and build the services.

    On the embedded default the schema is migrated automatically; on an external database
    the operator runs `relay db upgrade`, and a stale schema refuses to serve.
    """
    prepare_data_dir(settings)
    async with contextlib.AsyncExitStack() as stack:
        if settings.embedded_database:
            await upgrade(settings.effective_database_url)
        database = await open_database(settings.effective_database_url)
        stack.push_async_callback(database.close)
        await require_current_schema(database)
        keyring = Keyring.open(settings.effective_key_file, clock.now())
        redis: Redis | None = None
        if settings.redis_url:
            redis = await open_redis(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            broker: Broker = RedisBroker(redis, settings.redis_namespace)
            ephemeral: EphemeralStore = RedisEphemeralStore(redis, settings.redis_namespace)
            spool: Spool = RedisSpool(redis, settings.redis_namespace, clock)
        else:
            broker, ephemeral = MemoryBroker(), MemoryEphemeralStore(clock)
            spool = open_filesystem_spool(settings, clock)
        stack.push_async_callback(spool.close)
        await broker.start()
        stack.push_async_callback(broker.close)
        metrics = Metrics()
        audit = AuditLog(database, keyring.audit_key, clock, metrics)
        sessions = SessionService(
            database, audit, broker, clock,
            idle_timeout=settings.session_idle_timeout, lifetime=settings.session_lifetime,
        )
        stack.push_async_callback(sessions.close)
        accounts = AccountService(database, audit, sessions, clock)
        login = LoginService(database, sessions, audit, ephemeral, keyring, clock, metrics, settings)
        second_factor = SecondFactorService(database, audit, keyring, clock)
        integrations = IntegrationService(
            database, sessions, audit, ephemeral, clock,
            token_url=settings.effective_public_url + TOKEN_PATH, token_lifetime=settings.integration_token_lifetime,
        )
        devices = DeviceService(
            database, audit, sessions, broker, clock,
            max_devices=settings.max_devices_per_user, max_one_time_keys=settings.max_one_time_keys,
        )
        portal = await stack.enter_async_context(
            open_portal(database, audit, keyring, ephemeral, devices, clock, settings))
        yield Runtime(
            settings=settings,
            clock=clock,
            database=database,
            redis=redis,
            broker=broker,
            ephemeral=ephemeral,
            spool=spool,
            keyring=keyring,
            metrics=metrics,
            audit=audit,
            audit_reader=AuditReader(database, audit, keyring.audit_key),
            sessions=sessions,
            accounts=accounts,
            login=login,
            second_factor=second_factor,
            integrations=integrations,
            devices=devices,
            camera=build_camera(database, audit, spool, broker, ephemeral, clock, settings, gate=portal.upload_gate),
            messaging=build_messaging(database, audit, spool, broker, clock, settings),
            portal=portal,
        )

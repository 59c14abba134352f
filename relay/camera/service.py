"""The camera relay's services, built together from their explicit dependencies."""

from __future__ import annotations

from dataclasses import dataclass

from relay.audit.log import AuditLog
from relay.broker.contract import DEVICE_REVOKED, Broker
from relay.camera.announce import Announcer
from relay.camera.append_recipients import HeadService
from relay.camera.delivery import DeliveryService
from relay.camera.expiry import BlobSweeper
from relay.camera.notifier import DeviceNotifier
from relay.camera.purge import Purger
from relay.camera.retention import RetentionPolicy
from relay.camera.spool.contract import Spool
from relay.camera.upload_gate import UploadGate
from relay.camera.uploads import UploadService
from relay.clock import Clock
from relay.ephemeral.contract import EphemeralStore
from relay.ephemeral.rate_limit import RateLimit
from relay.settings import Settings
from relay.storage.database import Database


@dataclass(frozen=True)
class Camera:
    notifier: DeviceNotifier
    retention: RetentionPolicy
    uploads: UploadService
    delivery: DeliveryService
    heads: HeadService
    sweeper: BlobSweeper


def build_camera(database: Database, audit: AuditLog, spool: Spool, broker: Broker, ephemeral: EphemeralStore,
                 clock: Clock, settings: Settings, *, gate: UploadGate | None = None) -> Camera:
    """Build the services and subscribe the sweeper to device revocations."""
    notifier = DeviceNotifier()
    purger = Purger(database, audit, spool, clock)
    announcer = Announcer(database, audit, notifier, clock)
    retention = RetentionPolicy(database, audit, default_seconds=settings.photo_retention)
    sweeper = BlobSweeper(database, audit, spool, clock, purger)
    upload_rate = RateLimit(ephemeral, clock, name="upload-rate", limit=settings.upload_rate_per_minute, window=60,
                            message="too many uploads from this device; wait a minute")
    broker.subscribe(DEVICE_REVOKED, sweeper.device_revoked)
    return Camera(
        notifier=notifier,
        retention=retention,
        uploads=UploadService(database, audit, spool, clock, purger, announcer, retention, upload_rate,
                              max_bytes=settings.max_upload_bytes, window_seconds=settings.upload_window, gate=gate),
        delivery=DeliveryService(database, audit, spool, clock, purger),
        heads=HeadService(database, audit, spool, clock, announcer),
        sweeper=sweeper,
    )

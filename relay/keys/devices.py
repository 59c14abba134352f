"""Devices and the public keys they publish: registration, key rotation, one-time keys,
revocation, and the directory senders read. Every query is scoped to the caller's tenant;
a device of another tenant, or a revoked one, is indistinguishable from an unknown id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal, PrincipalType, Role
from relay.auth.sessions import SessionService
from relay.broker.contract import DEVICE_REVOKED, Broker
from relay.clock import Clock
from relay.errors import Conflict, Forbidden, InvalidRequest, NotFound
from relay.ids import new_id
from relay.keys.fingerprints import fingerprint
from relay.keys.signatures import KeyPurpose, SignedKey, verify
from relay.storage.database import Database
from relay.storage.tables import devices, integrations, invitations, one_time_keys, users

OWNER_TABLES = {PrincipalType.USER: users, PrincipalType.INTEGRATION: integrations,
                PrincipalType.INVITATION: invitations}


@dataclass(frozen=True)
class Device:
    id: str
    tenant_id: str
    owner_type: PrincipalType
    owner_id: str
    name: str
    identity_key: bytes
    encryption_key: SignedKey
    created_at: datetime
    rotated_at: datetime | None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.identity_key)


@dataclass(frozen=True)
class Claim:
    """A device's current keys and one of its one-time keys, or None when it has none left."""

    device: Device
    one_time_key: SignedKey | None


def _device(row: Any) -> Device:
    return Device(
        row.id, row.tenant_id, PrincipalType(row.owner_type), row.owner_id, row.name, row.identity_key,
        SignedKey(row.encryption_key_id, row.encryption_key, row.encryption_key_signature),
        row.created_at, row.rotated_at,
    )


def _verify_one_time_keys(identity_key: bytes, keys: Sequence[SignedKey]) -> None:
    seen: set[str] = set()
    for index, key in enumerate(keys):
        if key.key_id in seen:
            raise Conflict(f"one-time key id {key.key_id!r} appears twice", code="duplicate_key_id")
        seen.add(key.key_id)
        verify(identity_key, KeyPurpose.ONE_TIME, key, field=f"one_time_keys.{index}")


class DeviceService:
    def __init__(
        self, database: Database, audit: AuditLog, sessions: SessionService, broker: Broker, clock: Clock, *,
        max_devices: int, max_one_time_keys: int,
    ) -> None:
        self._database = database
        self._audit = audit
        self._sessions = sessions
        self._broker = broker
        self._clock = clock
        self.max_devices = max_devices
        self.max_one_time_keys = max_one_time_keys

    async def register(
        self, principal: Principal, *, name: str, identity_key: bytes, encryption_key: SignedKey,
        one_time_key_batch: Sequence[SignedKey] = (),
    ) -> Device:
        """Register a device of the caller after checking every signature; nothing is stored if one fails."""
        name = name.strip()
        if not name:
            raise InvalidRequest("give the device a name", code="invalid_device_name")
        verify(identity_key, KeyPurpose.ENCRYPTION, encryption_key, field="encryption_key")
        _verify_one_time_keys(identity_key, one_time_key_batch)
        if len(one_time_key_batch) > self.max_one_time_keys:
            raise self._too_many_keys(0)
        now, device_id = self._clock.now(), new_id()
        try:
            return await self._insert_device(principal, device_id, now, name, identity_key, encryption_key,
                                             one_time_key_batch)
        except IntegrityError as error:
            if "identity_key" not in str(error.orig):
                raise
            raise Conflict("another device already uses this identity key", code="identity_key_in_use") from None

    async def _insert_device(
        self, principal: Principal, device_id: str, now: datetime, name: str, identity_key: bytes,
        encryption_key: SignedKey, one_time_key_batch: Sequence[SignedKey],
    ) -> Device:
        async with self._database.transaction() as connection:
            owner = OWNER_TABLES[principal.type]
            await connection.execute(select(owner.c.id).where(owner.c.id == principal.id).with_for_update())
            active = await connection.scalar(select(func.count()).select_from(devices).where(
                devices.c.tenant_id == principal.tenant_id, devices.c.owner_type == principal.type.value,
                devices.c.owner_id == principal.id, devices.c.revoked_at.is_(None),
            ))
            if active >= self.max_devices:
                raise Conflict(f"at most {self.max_devices} active devices; revoke one first",
                               code="too_many_devices", details={"max": self.max_devices})
            in_use = await connection.scalar(select(devices.c.id).where(
                devices.c.tenant_id == principal.tenant_id, devices.c.identity_key == identity_key,
                devices.c.revoked_at.is_(None),
            ))
            if in_use is not None:
                raise Conflict("another device already uses this identity key", code="identity_key_in_use")
            await connection.execute(insert(devices).values(
                id=device_id, tenant_id=principal.tenant_id, owner_type=principal.type.value, owner_id=principal.id,
                name=name, identity_key=identity_key, encryption_key_id=encryption_key.key_id,
                encryption_key=encryption_key.public_key, encryption_key_signature=encryption_key.signature,
                created_at=now,
            ))
            await self._insert_one_time_keys(connection, principal.tenant_id, device_id, one_time_key_batch)
            await self._audit.record(
                connection, AuditAction.DEVICE_REGISTERED, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="device", object_id=device_id,
                details={"key_id": encryption_key.key_id, "one_time_keys": len(one_time_key_batch)},
            )
            row = await self._active_row(connection, principal.tenant_id, device_id)
        return _device(row)

    async def list_own(self, principal: Principal) -> list[Device]:
        async with self._database.read() as connection:
            rows = await connection.execute(select(devices).where(
                devices.c.tenant_id == principal.tenant_id, devices.c.owner_type == principal.type.value,
                devices.c.owner_id == principal.id, devices.c.revoked_at.is_(None),
            ).order_by(devices.c.created_at, devices.c.id))
            return [_device(row) for row in rows]

    async def rotate_encryption_key(self, principal: Principal, device_id: str, key: SignedKey) -> Device:
        """Replace the caller's device's signed encryption key with a new one under a new key id."""
        async with self._database.transaction() as connection:
            row = await self._owned_row(connection, principal, device_id)
            if key.key_id == row.encryption_key_id:
                raise Conflict("a new key needs a new key id", code="key_id_reused")
            verify(row.identity_key, KeyPurpose.ENCRYPTION, key, field="encryption_key")
            await connection.execute(update(devices).where(devices.c.id == device_id).values(
                encryption_key_id=key.key_id, encryption_key=key.public_key,
                encryption_key_signature=key.signature, rotated_at=self._clock.now(),
            ))
            await self._audit.record(
                connection, AuditAction.DEVICE_KEY_ROTATED, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="device", object_id=device_id,
                details={"previous_key_id": row.encryption_key_id, "key_id": key.key_id},
            )
            return _device(await self._active_row(connection, principal.tenant_id, device_id))

    async def add_one_time_keys(self, principal: Principal, device_id: str, keys: Sequence[SignedKey]) -> int:
        """Store more one-time keys for the caller's device; returns how many it now holds."""
        async with self._database.transaction() as connection:
            row = await self._owned_row(connection, principal, device_id)
            _verify_one_time_keys(row.identity_key, keys)
            held = await self._held(connection, device_id)
            if held + len(keys) > self.max_one_time_keys:
                raise self._too_many_keys(held)
            taken = (await connection.execute(select(one_time_keys.c.key_id).where(
                one_time_keys.c.device_id == device_id, one_time_keys.c.key_id.in_([key.key_id for key in keys]),
            ))).scalars().first()
            if taken is not None:
                raise Conflict(f"one-time key id {taken!r} is already stored", code="duplicate_key_id")
            await self._insert_one_time_keys(connection, principal.tenant_id, device_id, keys)
            await self._audit.record(
                connection, AuditAction.ONE_TIME_KEYS_UPLOADED, tenant_id=principal.tenant_id,
                actor=principal.actor, object_type="device", object_id=device_id, details={"count": len(keys)},
            )
        return held + len(keys)

    async def count_one_time_keys(self, principal: Principal, device_id: str) -> int:
        async with self._database.read() as connection:
            await self._owned_row(connection, principal, device_id, lock=False)
            return await self._held(connection, device_id)

    async def revoke(self, principal: Principal, device_id: str) -> None:
        """Revoke a device (its owner, or an admin of its tenant): its keys go, its sessions end,
        and every node is told to disconnect it and purge what waits for it."""
        async with self._database.transaction() as connection:
            row = await self._active_row(connection, principal.tenant_id, device_id, lock=True)
            owned = row.owner_type == principal.type.value and row.owner_id == principal.id
            if not owned and principal.role is not Role.ADMIN:
                raise Forbidden("only the device's owner or an admin may revoke it", code="not_device_owner")
            await connection.execute(update(devices).where(devices.c.id == device_id).values(
                revoked_at=self._clock.now(), identity_key=None, encryption_key_id=None, encryption_key=None,
                encryption_key_signature=None,
            ))
            removed = await connection.execute(delete(one_time_keys).where(one_time_keys.c.device_id == device_id))
            ended = await self._sessions.end_for_device(connection, device_id)
            await self._audit.record(
                connection, AuditAction.DEVICE_REVOKED, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="device", object_id=device_id,
                details={"by": "owner" if owned else "admin", "owner_type": row.owner_type,
                         "owner_id": row.owner_id, "sessions_ended": ended, "one_time_keys_removed": removed.rowcount},
            )
        await self._broker.publish(DEVICE_REVOKED, {"device_id": device_id, "tenant_id": principal.tenant_id})

    async def owner_devices(self, principal: Principal, owner_type: PrincipalType, owner_id: str) -> list[Device]:
        """The directory: a user's or integration's active devices with their current keys."""
        owner = OWNER_TABLES[owner_type]
        async with self._database.transaction() as connection:
            found = await connection.scalar(
                select(owner.c.id).where(owner.c.tenant_id == principal.tenant_id, owner.c.id == owner_id,
                                         owner.c.disabled.is_(False))
            )
            if found is None:
                raise NotFound(f"no such {owner_type.value}", code=f"{owner_type.value}_not_found")
            rows = (await connection.execute(select(devices).where(
                devices.c.tenant_id == principal.tenant_id, devices.c.owner_type == owner_type.value,
                devices.c.owner_id == owner_id, devices.c.revoked_at.is_(None),
            ).order_by(devices.c.created_at, devices.c.id))).all()
            await self._audit.record(
                connection, AuditAction.DIRECTORY_READ, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type=owner_type.value, object_id=owner_id, details={"devices": len(rows)},
            )
        return [_device(row) for row in rows]

    @staticmethod
    async def active(connection: AsyncConnection, tenant_id: str, device_ids: Sequence[str]) -> list[Device]:
        """In the caller's transaction: these devices with their current keys, if still active."""
        if not device_ids:
            return []
        rows = await connection.execute(select(devices).where(
            devices.c.tenant_id == tenant_id, devices.c.id.in_(list(device_ids)), devices.c.revoked_at.is_(None),
        ).order_by(devices.c.owner_id, devices.c.created_at, devices.c.id))
        return [_device(row) for row in rows]

    async def lookup(self, principal: Principal, device_id: str) -> Device:
        """The directory: one active device's current keys; a patient portal device (owner type
        ``invitation``) also after its invitation ended, so recipients can verify what it sent."""
        async with self._database.transaction() as connection:
            row = (await connection.execute(select(devices).where(
                devices.c.tenant_id == principal.tenant_id, devices.c.id == device_id,
                or_(devices.c.revoked_at.is_(None), and_(devices.c.owner_type == PrincipalType.INVITATION.value,
                                                         devices.c.identity_key.is_not(None))),
            ))).first()
            if row is None:
                raise NotFound("no such device", code="device_not_found")
            await self._audit.record(
                connection, AuditAction.DIRECTORY_READ, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="device", object_id=device_id,
            )
        return _device(row)

    async def claim_one_time_key(self, principal: Principal, device_id: str) -> Claim:
        """Hand out one of the device's one-time keys, each to exactly one caller, even concurrently.

        The key is removed by a single conditional DELETE ... RETURNING; on PostgreSQL the
        candidate row is locked with SKIP LOCKED so concurrent claims take different keys.
        """
        async with self._database.transaction() as connection:
            row = await self._active_row(connection, principal.tenant_id, device_id)
            candidate = (
                select(one_time_keys.c.key_id).where(one_time_keys.c.device_id == device_id)
                .order_by(one_time_keys.c.created_at, one_time_keys.c.key_id).limit(1)
                .with_for_update(skip_locked=True).scalar_subquery()
            )
            claimed = (await connection.execute(
                delete(one_time_keys).where(one_time_keys.c.device_id == device_id,
                                            one_time_keys.c.key_id == candidate)
                .returning(one_time_keys.c.key_id, one_time_keys.c.public_key, one_time_keys.c.signature)
            )).first()
            await self._audit.record(
                connection, AuditAction.ONE_TIME_KEY_CLAIMED, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="device", object_id=device_id,
                details={"key_id": claimed.key_id if claimed else None, "exhausted": claimed is None},
            )
        key = SignedKey(claimed.key_id, claimed.public_key, claimed.signature) if claimed else None
        return Claim(_device(row), key)

    @staticmethod
    async def _active_row(connection: AsyncConnection, tenant_id: str, device_id: str, *, lock: bool = False) -> Any:
        query = select(devices).where(
            devices.c.tenant_id == tenant_id, devices.c.id == device_id, devices.c.revoked_at.is_(None)
        )
        row = (await connection.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            raise NotFound("no such device", code="device_not_found")
        return row

    async def _owned_row(
        self, connection: AsyncConnection, principal: Principal, device_id: str, *, lock: bool = True
    ) -> Any:
        row = await self._active_row(connection, principal.tenant_id, device_id, lock=lock)
        if row.owner_type != principal.type.value or row.owner_id != principal.id:
            raise Forbidden("only the device's owner may do this", code="not_device_owner")
        return row

    @staticmethod
    async def _held(connection: AsyncConnection, device_id: str) -> int:
        return int(await connection.scalar(
            select(func.count()).select_from(one_time_keys).where(one_time_keys.c.device_id == device_id)
        ) or 0)

    async def _insert_one_time_keys(
        self, connection: AsyncConnection, tenant_id: str, device_id: str, keys: Sequence[SignedKey]
    ) -> None:
        if keys:
            now = self._clock.now()
            await connection.execute(insert(one_time_keys), [
                {"device_id": device_id, "key_id": key.key_id, "tenant_id": tenant_id, "public_key": key.public_key,
                 "signature": key.signature, "created_at": now}
                for key in keys
            ])

    def _too_many_keys(self, held: int) -> Conflict:
        return Conflict(
            f"a device may hold at most {self.max_one_time_keys} unclaimed one-time keys",
            code="too_many_one_time_keys", details={"max": self.max_one_time_keys, "held": held},
        )

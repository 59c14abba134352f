"""Enrolling, confirming and removing a TOTP second factor, and its recovery codes.

The TOTP seed is sealed under the keyring's active key-encryption key before it is stored.
Recovery codes are shown once and stored only as digests.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal
from relay.auth.totp import (
    matching_step,
    new_recovery_codes,
    new_secret,
    provisioning_uri,
    recovery_code_hash,
    secret_text,
)
from relay.clock import Clock
from relay.errors import Conflict, InvalidRequest
from relay.keys.keyring import Keyring
from relay.keys.sealed_columns import TOTP_SECRET
from relay.storage.database import Database
from relay.storage.tables import recovery_codes, tenants, users

ISSUER = "Relay"


@dataclass(frozen=True)
class Enrolment:
    secret: str
    otpauth_uri: str


class SecondFactorService:
    def __init__(self, database: Database, audit: AuditLog, keyring: Keyring, clock: Clock) -> None:
        self._database = database
        self._audit = audit
        self._keyring = keyring
        self._clock = clock

    async def begin(self, principal: Principal) -> Enrolment:
        """Start (or restart) enrolment: a fresh seed, inactive until a code from it is confirmed."""
        secret = new_secret()
        async with self._database.transaction() as connection:
            row = (await connection.execute(
                select(users.c.username, users.c.totp_enabled, tenants.c.slug)
                .join(tenants, tenants.c.id == users.c.tenant_id).where(users.c.id == principal.id)
            )).one()
            if row.totp_enabled:
                raise Conflict("a second factor is already active; remove it first", code="totp_already_enabled")
            await connection.execute(
                update(users).where(users.c.id == principal.id).values(
                    totp_secret=self._keyring.seal(secret, TOTP_SECRET.context(principal.id)), totp_last_step=None
                )
            )
        account = f"{row.username}@{row.slug}"
        return Enrolment(secret_text(secret), provisioning_uri(secret, account=account, issuer=ISSUER))

    async def confirm(self, principal: Principal, code: str) -> list[str]:
        """Activate the pending seed when ``code`` matches; returns fresh recovery codes (shown once)."""
        async with self._database.transaction() as connection:
            row = (await connection.execute(
                select(users.c.totp_secret, users.c.totp_enabled).where(users.c.id == principal.id)
            )).one()
            if row.totp_enabled:
                raise Conflict("the second factor is already active", code="totp_already_enabled")
            if row.totp_secret is None:
                raise InvalidRequest("start enrolment first", code="totp_not_started")
            secret = self._keyring.open_sealed(row.totp_secret, TOTP_SECRET.context(principal.id))
            step = matching_step(secret, code, self._clock.now(), after_step=None)
            if step is None:
                raise InvalidRequest("that code does not match; check the device's clock", code="invalid_totp")
            await connection.execute(
                update(users).where(users.c.id == principal.id).values(totp_enabled=True, totp_last_step=step)
            )
            codes = await self._replace_recovery_codes(connection, principal)
            await self._audit.record(connection, AuditAction.TOTP_ENROLLED, tenant_id=principal.tenant_id,
                                     actor=principal.actor, object_type="user", object_id=principal.id)
        return codes

    async def regenerate_recovery_codes(self, principal: Principal) -> list[str]:
        async with self._database.transaction() as connection:
            enabled = await connection.scalar(select(users.c.totp_enabled).where(users.c.id == principal.id))
            if not enabled:
                raise Conflict("enrol a second factor first", code="totp_not_enabled")
            codes = await self._replace_recovery_codes(connection, principal)
            await self._audit.record(connection, AuditAction.RECOVERY_CODES_REGENERATED,
                                     tenant_id=principal.tenant_id, actor=principal.actor,
                                     object_type="user", object_id=principal.id)
        return codes

    async def disable(self, tenant_id: str, user_id: str, *, actor: tuple[str, str | None]) -> None:
        """Remove the second factor (the user after re-authenticating, or an admin resetting a lost phone)."""
        async with self._database.transaction() as connection:
            await connection.execute(
                update(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id)
                .values(totp_enabled=False, totp_secret=None, totp_last_step=None)
            )
            await connection.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
            await self._audit.record(connection, AuditAction.TOTP_DISABLED, tenant_id=tenant_id, actor=actor,
                                     object_type="user", object_id=user_id)

    @staticmethod
    async def _replace_recovery_codes(connection: AsyncConnection, principal: Principal) -> list[str]:
        codes = new_recovery_codes()
        await connection.execute(delete(recovery_codes).where(recovery_codes.c.user_id == principal.id))
        await connection.execute(
            insert(recovery_codes),
            [{"code_hash": recovery_code_hash(code), "user_id": principal.id, "tenant_id": principal.tenant_id}
             for code in codes],
        )
        return codes

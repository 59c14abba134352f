"""Logging in with password and second factor, with per-address rate limits and per-account lockout."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.passwords import verify_password
from relay.auth.principal import Principal, PrincipalType
from relay.auth.sessions import IssuedSession, SessionService
from relay.auth.totp import matching_step, recovery_code_hash
from relay.clock import Clock
from relay.ephemeral.contract import EphemeralStore
from relay.ephemeral.rate_limit import RateLimit
from relay.errors import (
    Forbidden,
    InvalidRequest,
    Locked,
    TooManyRequests,
    Unauthenticated,
)
from relay.keys.keyring import Keyring
from relay.keys.sealed_columns import TOTP_SECRET
from relay.metrics import Metrics
from relay.settings import Settings
from relay.storage.database import Database
from relay.storage.tables import devices, recovery_codes, tenants, users

RATE_WINDOW = 60


class _Rejected(Exception):
    """A wrong second factor, raised inside a transaction so its work rolls back before the failure is recorded."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Credentials:
    tenant: str
    username: str
    password: str
    totp_code: str | None = None
    recovery_code: str | None = None
    device_id: str | None = None


class LoginService:
    def __init__(
        self, database: Database, sessions: SessionService, audit: AuditLog, ephemeral: EphemeralStore,
        keyring: Keyring, clock: Clock, metrics: Metrics, settings: Settings,
    ) -> None:
        self._database = database
        self._sessions = sessions
        self._audit = audit
        self._ephemeral = ephemeral
        self._keyring = keyring
        self._clock = clock
        self._metrics = metrics
        self._max_failures = settings.login_max_failures
        self._lockout = timedelta(seconds=settings.login_lockout)
        self._rate = RateLimit(ephemeral, clock, name="login-rate", limit=settings.login_rate_per_minute,
                               window=RATE_WINDOW, message="too many login attempts from this address; wait a minute")
        self._reauth_window = timedelta(seconds=settings.reauth_window)

    async def login(self, credentials: Credentials, *, client_address: str) -> IssuedSession:
        await self._limit_rate(client_address)
        async with self._database.read() as connection:
            user = (
                await connection.execute(
                    select(users).join(tenants, tenants.c.id == users.c.tenant_id)
                    .where(tenants.c.slug == credentials.tenant, users.c.username == credentials.username)
                )
            ).first()
        if user is None:
            await verify_password(None, credentials.password)
            await self._fail(None, "unknown_account")
        now = self._clock.now()
        if user.locked_until is not None and user.locked_until > now:
            await self._fail(user, "locked")
        if not await verify_password(user.password_hash, credentials.password):
            await self._fail(user, "bad_password", counts=True)
        if user.disabled:
            await self._fail(user, "disabled")
        try:
            issued = await self._open_session(user, credentials)
        except _Rejected as rejected:
            await self._fail(user, rejected.reason, counts=True)
        self._metrics.logins.labels("success").inc()
        return issued

    async def _open_session(self, user: Any, credentials: Credentials) -> IssuedSession:
        async with self._database.transaction() as connection:
            if user.totp_enabled:
                await self._second_factor(connection, user, credentials)
            if credentials.device_id is not None:
                await self._require_own_device(connection, user.tenant_id, user.id, credentials.device_id)
            await connection.execute(
                update(users).where(users.c.id == user.id).values(failed_logins=0, locked_until=None)
            )
            issued = await self._sessions.issue(
                connection, tenant_id=user.tenant_id, principal_type=PrincipalType.USER, principal_id=user.id,
                device_id=credentials.device_id,
            )
            await self._audit.record(
                connection, AuditAction.LOGIN, tenant_id=user.tenant_id, actor=("user", user.id),
                object_type="session", object_id=issued.session_id,
                details={"second_factor": bool(user.totp_enabled)},
            )
        return issued

    async def move_to_device(self, principal: Principal, device_id: str) -> IssuedSession:
        """Trade the caller's session for one bound to ``device_id`` (one of their active devices),
        so a user who just registered a device needs no second login, nor a second TOTP code."""
        async with self._database.transaction() as connection:
            await self._require_own_device(connection, principal.tenant_id, principal.id, device_id)
            await self._sessions.end(connection, principal.session_id)
            issued = await self._sessions.issue(
                connection, tenant_id=principal.tenant_id, principal_type=PrincipalType.USER,
                principal_id=principal.id, device_id=device_id,
            )
            await self._audit.record(
                connection, AuditAction.SESSION_MOVED, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="session", object_id=issued.session_id,
                details={"from_session_id": principal.session_id, "device_id": device_id},
            )
        return issued

    async def reauthenticate(self, principal: Principal, *, password: str, totp_code: str | None) -> None:
        """Prove presence again (for exports and other sensitive actions) without a new session."""
        async with self._database.read() as connection:
            user = (await connection.execute(select(users).where(users.c.id == principal.id))).first()
        if user is None or not await verify_password(user.password_hash, password):
            await self._fail(user, "bad_password", counts=True, action=AuditAction.REAUTH)
        try:
            async with self._database.transaction() as connection:
                if user.totp_enabled:
                    await self._second_factor(connection, user, Credentials("", "", "", totp_code=totp_code))
                await self._sessions.mark_reauthenticated(connection, principal.session_id)
                await self._audit.record(connection, AuditAction.REAUTH, tenant_id=principal.tenant_id,
                                         actor=principal.actor, object_type="session", object_id=principal.session_id)
        except _Rejected as rejected:
            await self._fail(user, rejected.reason, counts=True, action=AuditAction.REAUTH)

    def require_recent_reauth(self, principal: Principal) -> None:
        """Refuse unless the session re-authenticated within the re-authentication window."""
        if principal.reauth_at is None or self._clock.now() - principal.reauth_at > self._reauth_window:
            raise Forbidden("re-authenticate first (POST /api/v1/auth/reauth)", code="reauth_required")

    async def _limit_rate(self, client_address: str) -> None:
        address = hmac.new(self._keyring.audit_key, b"login-rate\x00" + client_address.encode(),
                           hashlib.sha256).hexdigest()[:32]
        try:
            await self._rate.hit(address)
        except TooManyRequests:
            self._metrics.logins.labels("rate_limited").inc()
            raise

    async def _second_factor(self, connection: AsyncConnection, user: Any, credentials: Credentials) -> None:
        """Check the TOTP or recovery code inside ``connection``'s transaction; raises _Rejected."""
        if credentials.recovery_code:
            used = await connection.execute(
                delete(recovery_codes).where(
                    recovery_codes.c.user_id == user.id,
                    recovery_codes.c.code_hash == recovery_code_hash(credentials.recovery_code),
                )
            )
            if used.rowcount == 1:
                await self._audit.record(connection, AuditAction.RECOVERY_CODE_USED, tenant_id=user.tenant_id,
                                         actor=("user", user.id), object_type="user", object_id=user.id)
                return
            raise _Rejected("bad_recovery_code")
        if not credentials.totp_code:
            raise Unauthenticated("enter the code from your authenticator app", code="totp_required")
        secret = self._keyring.open_sealed(user.totp_secret, TOTP_SECRET.context(user.id))
        step = matching_step(secret, credentials.totp_code, self._clock.now(), after_step=user.totp_last_step)
        if step is None:
            raise _Rejected("bad_totp")
        await connection.execute(update(users).where(users.c.id == user.id).values(totp_last_step=step))

    @staticmethod
    async def _require_own_device(connection: AsyncConnection, tenant_id: str, user_id: str, device_id: str) -> None:
        found = await connection.scalar(
            select(devices.c.id).where(
                devices.c.id == device_id, devices.c.tenant_id == tenant_id, devices.c.owner_type == "user",
                devices.c.owner_id == user_id, devices.c.revoked_at.is_(None),
            )
        )
        if found is None:
            raise InvalidRequest("that device is not one of your active devices", code="unknown_device")

    async def _fail(
        self, user: Any, reason: str, *, counts: bool = False, action: AuditAction = AuditAction.LOGIN
    ) -> NoReturn:
        """Record a failed attempt (toward lockout when it ``counts``) and raise the answer."""
        self._metrics.logins.labels(reason).inc()
        tenant_id, actor = (user.tenant_id, ("user", user.id)) if user is not None else (None, ("anonymous", None))
        locked_now = False
        async with self._database.transaction() as connection:
            if user is not None and counts:
                failures = (await connection.scalar(
                    select(users.c.failed_logins).where(users.c.id == user.id)
                ) or 0) + 1
                locked_now = failures >= self._max_failures
                values: dict[str, Any] = {"failed_logins": 0 if locked_now else failures}
                if locked_now:
                    values["locked_until"] = self._clock.now() + self._lockout
                await connection.execute(update(users).where(users.c.id == user.id).values(**values))
            await self._audit.record(connection, action, tenant_id=tenant_id, actor=actor, outcome="failure",
                                     object_type="user" if user is not None else None,
                                     object_id=user.id if user is not None else None, details={"reason": reason})
            if locked_now:
                await self._audit.record(connection, AuditAction.LOGIN_LOCKED, tenant_id=tenant_id, actor=actor,
                                         object_type="user", object_id=user.id,
                                         details={"seconds": int(self._lockout.total_seconds())})
        if reason == "locked" or locked_now:
            seconds = int(self._lockout.total_seconds())
            if user is not None and user.locked_until is not None and not locked_now:
                seconds = max(1, int((user.locked_until - self._clock.now()).total_seconds()))
            raise Locked("too many failed attempts; the account is locked for a while",
                         details={"retry_after": seconds}, retry_after=seconds)
        raise Unauthenticated("wrong tenant, username, password or code", code="invalid_credentials")

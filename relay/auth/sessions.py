"""Sessions: opaque bearer tokens stored only as SHA-256 digests, with an idle timeout and an
absolute lifetime. Users' and integration principals' tokens are both sessions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal, PrincipalType, Role
from relay.batching import Batcher
from relay.clock import Clock
from relay.errors import Unauthenticated
from relay.ids import new_id, new_token, token_hash
from relay.storage.database import Database
from relay.storage.tables import integrations, sessions, users

TOUCH_EVERY = timedelta(seconds=15)
SESSIONS_BY_DIGEST = (
    select(sessions, users.c.role, users.c.disabled.label("user_disabled"),
           integrations.c.disabled.label("integration_disabled"))
    .outerjoin(users, and_(sessions.c.principal_type == PrincipalType.USER.value,
                           users.c.id == sessions.c.principal_id))
    .outerjoin(integrations, and_(sessions.c.principal_type == PrincipalType.INTEGRATION.value,
                                  integrations.c.id == sessions.c.principal_id))
    .where(sessions.c.token_hash.in_(bindparam("digests", expanding=True)))
)
"""Built once: every request and every socket event's periodic re-check runs it."""


@dataclass(frozen=True)
class IssuedSession:
    token: str
    session_id: str
    expires_at: datetime


class SessionService:
    def __init__(
        self, database: Database, audit: AuditLog, clock: Clock, *, idle_timeout: int, lifetime: int
    ) -> None:
        self._database = database
        self._audit = audit
        self._clock = clock
        self.idle_timeout = timedelta(seconds=idle_timeout)
        self.lifetime = timedelta(seconds=lifetime)
        self._lookups: Batcher[str, Row[Any] | None] = Batcher(self._look_up)

    async def issue(
        self,
        connection: AsyncConnection,
        *,
        tenant_id: str,
        principal_type: PrincipalType,
        principal_id: str,
        device_id: str | None = None,
        lifetime: timedelta | None = None,
    ) -> IssuedSession:
        now = self._clock.now()
        token, session_id = new_token(), new_id()
        expires_at = now + (lifetime or self.lifetime)
        await connection.execute(
            insert(sessions).values(
                id=session_id,
                token_hash=token_hash(token),
                tenant_id=tenant_id,
                principal_type=principal_type.value,
                principal_id=principal_id,
                device_id=device_id,
                created_at=now,
                last_seen_at=now,
                expires_at=expires_at,
                reauth_at=now if principal_type is PrincipalType.USER else None,
            )
        )
        return IssuedSession(token, session_id, expires_at)

    async def authenticate(self, token: str) -> Principal:
        """The principal behind a live token, or Unauthenticated with the reason as its code.
        Concurrent calls share one lookup and one touch of ``last_seen_at`` (see ``_look_up``)."""
        row = await self._lookups.submit(token_hash(token))
        if row is None or row.ended_at is not None:
            raise Unauthenticated("the session is not valid; log in again", code="invalid_token")
        kind = PrincipalType(row.principal_type)
        if row.user_disabled or row.integration_disabled:
            raise Unauthenticated("the account is disabled", code="account_disabled")
        if expiry := self._expiry(row, self._clock.now()):
            await self._end_expired(row.id, row.tenant_id, kind, row.principal_id, expiry)
            raise Unauthenticated("the session has expired; log in again", code="session_expired")
        role = Role.INTEGRATION if kind is PrincipalType.INTEGRATION else Role(row.role)
        return Principal(row.tenant_id, kind, row.principal_id, role, row.id, row.device_id, row.reauth_at)

    def _expiry(self, row: Row[Any], now: datetime) -> str | None:
        """Why the session has run out ("idle", "lifetime"), or None while it is live."""
        if row.expires_at <= now:
            return "lifetime"
        if row.principal_type == PrincipalType.USER.value and row.last_seen_at + self.idle_timeout <= now:
            return "idle"
        return None

    async def _look_up(self, digests: Sequence[str]) -> list[Row[Any] | None]:
        """The session rows of a batch of token digests, in one query; live sessions not seen
        for TOUCH_EVERY are marked seen now, in one statement."""
        now = self._clock.now()
        async with self._database.read() as connection:
            found = {row.token_hash: row for row in await connection.execute(
                SESSIONS_BY_DIGEST, {"digests": list(set(digests))}
            )}
        stale = [row.id for row in found.values()
                 if row.ended_at is None and self._expiry(row, now) is None and now - row.last_seen_at >= TOUCH_EVERY]
        if stale:
            async with self._database.transaction() as connection:
                await connection.execute(update(sessions).where(sessions.c.id.in_(stale)).values(last_seen_at=now))
        return [found.get(digest) for digest in digests]

    async def _end_expired(self, session_id: str, tenant_id: str, kind: PrincipalType, principal_id: str, why: str) -> None:
        async with self._database.transaction() as connection:
            ended = await connection.execute(
                update(sessions)
                .where(sessions.c.id == session_id, sessions.c.ended_at.is_(None))
                .values(ended_at=self._clock.now())
            )
            if ended.rowcount:
                await self._audit.record(
                    connection, AuditAction.SESSION_EXPIRED, tenant_id=tenant_id, actor=(kind.value, principal_id),
                    object_type="session", object_id=session_id, details={"reason": why},
                )

    async def end(self, connection: AsyncConnection, session_id: str) -> None:
        await connection.execute(
            update(sessions).where(sessions.c.id == session_id, sessions.c.ended_at.is_(None))
            .values(ended_at=self._clock.now())
        )

    async def end_all(self, connection: AsyncConnection, *, principal_type: PrincipalType, principal_id: str) -> int:
        result = await connection.execute(
            update(sessions)
            .where(sessions.c.principal_type == principal_type.value, sessions.c.principal_id == principal_id,
                   sessions.c.ended_at.is_(None))
            .values(ended_at=self._clock.now())
        )
        return result.rowcount

    async def end_for_device(self, connection: AsyncConnection, device_id: str) -> int:
        result = await connection.execute(
            update(sessions).where(sessions.c.device_id == device_id, sessions.c.ended_at.is_(None))
            .values(ended_at=self._clock.now())
        )
        return result.rowcount

    async def mark_reauthenticated(self, connection: AsyncConnection, session_id: str) -> None:
        await connection.execute(update(sessions).where(sessions.c.id == session_id).values(reauth_at=self._clock.now()))

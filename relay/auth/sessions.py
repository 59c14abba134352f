"""Sessions: opaque bearer tokens stored only as SHA-256 digests, with an idle timeout and an
absolute lifetime. Users' and integration principals' tokens are both sessions.

Activity is recorded in memory (``record_activity``) and written to ``last_seen_at`` by
``flush_activity``, which the server runs every TOUCH_EVERY, so no request waits on a write to
say it was seen; the idle check counts what is recorded but not yet written. Ending sessions
(``end``, ``end_all``) publishes SESSIONS_ENDED once the transaction commits, so every node
closes their sockets."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal, PrincipalType, Role
from relay.batching import Batcher
from relay.broker.contract import SESSIONS_ENDED, Broker
from relay.clock import Clock
from relay.errors import Unauthenticated
from relay.ids import new_id, new_token, token_hash
from relay.storage.database import Database
from relay.storage.tables import integrations, sessions, users

log = logging.getLogger(__name__)
TOUCH_EVERY = timedelta(seconds=15)
"""How often recorded activity is written to ``last_seen_at``: how late other nodes may see it."""
SESSIONS_BY_DIGEST = (
    select(sessions, users.c.role, users.c.disabled.label("user_disabled"),
           integrations.c.disabled.label("integration_disabled"))
    .outerjoin(users, and_(sessions.c.principal_type == PrincipalType.USER.value,
                           users.c.id == sessions.c.principal_id))
    .outerjoin(integrations, and_(sessions.c.principal_type == PrincipalType.INTEGRATION.value,
                                  integrations.c.id == sessions.c.principal_id))
    .where(sessions.c.token_hash.in_(bindparam("digests", expanding=True)))
)
"""Built once: every request and every socket's periodic re-check runs it."""
TOUCH = (
    update(sessions)
    .where(sessions.c.id.in_(bindparam("session_ids", expanding=True)), sessions.c.ended_at.is_(None),
           sessions.c.last_seen_at < bindparam("seen_at", type_=sessions.c.last_seen_at.type))
    .values(last_seen_at=bindparam("seen_at"))
)
"""One statement for every session last active in the same second: a row at a time, a flush of
a thousand sessions held the event loop for 40 ms."""


@dataclass(frozen=True)
class IssuedSession:
    token: str
    session_id: str
    expires_at: datetime


class SessionService:
    def __init__(
        self, database: Database, audit: AuditLog, broker: Broker, clock: Clock, *, idle_timeout: int, lifetime: int
    ) -> None:
        self._database = database
        self._audit = audit
        self._broker = broker
        self._clock = clock
        self.idle_timeout = timedelta(seconds=idle_timeout)
        self.lifetime = timedelta(seconds=lifetime)
        self._lookups: Batcher[str, Row[Any] | None] = Batcher(self._look_up)
        self._seen: dict[str, datetime] = {}

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
        """The principal behind a live token, or Unauthenticated with the reason as its code; the
        call counts as the session's activity. Concurrent calls share one lookup."""
        row = await self._lookups.submit(token_hash(token))
        if row is None or row.ended_at is not None:
            raise Unauthenticated("the session is not valid; log in again", code="invalid_token")
        kind = PrincipalType(row.principal_type)
        if row.user_disabled or row.integration_disabled:
            raise Unauthenticated("the account is disabled", code="account_disabled")
        if expiry := self._expiry(row, self._clock.now()):
            await self._end_expired(row.id, row.tenant_id, kind, row.principal_id, expiry)
            raise Unauthenticated("the session has expired; log in again", code="session_expired")
        self.record_activity(row.id, self._clock.now())
        role = Role.INTEGRATION if kind is PrincipalType.INTEGRATION else Role(row.role)
        return Principal(row.tenant_id, kind, row.principal_id, role, row.id, row.device_id, row.reauth_at,
                         row.expires_at)

    def record_activity(self, session_id: str, at: datetime) -> None:
        """Count ``at`` as the session's latest activity; ``flush_activity`` writes it."""
        previous = self._seen.get(session_id)
        if previous is None or at > previous:
            self._seen[session_id] = at

    async def flush_activity(self) -> None:
        """Write the activity recorded since the last flush to ``last_seen_at``, to the second
        (never backwards, never on an ended session); what is recorded meanwhile waits for the
        next flush."""
        pending = list(self._seen.items())
        by_second: dict[datetime, list[str]] = {}
        for session_id, at in pending:
            by_second.setdefault(at.replace(microsecond=0), []).append(session_id)
        for seen_at, session_ids in by_second.items():
            async with self._database.transaction() as connection:
                await connection.execute(TOUCH, {"session_ids": session_ids, "seen_at": seen_at})
        for session_id, at in pending:
            if self._seen.get(session_id) == at:
                del self._seen[session_id]

    async def close(self) -> None:
        """Write the activity still recorded; a database that cannot take it costs that activity
        (at most TOUCH_EVERY of it), never the shutdown."""
        try:
            await self.flush_activity()
        except (SQLAlchemyError, OSError):
            log.warning("the sessions' last activity could not be written at shutdown")

    def _expiry(self, row: Row[Any], now: datetime) -> str | None:
        """Why the session has run out ("idle", "lifetime"), or None while it is live."""
        if row.expires_at <= now:
            return "lifetime"
        last_seen = max(row.last_seen_at, self._seen.get(row.id, row.last_seen_at))
        if row.principal_type == PrincipalType.USER.value and last_seen + self.idle_timeout <= now:
            return "idle"
        return None

    async def _look_up(self, digests: Sequence[str]) -> list[Row[Any] | None]:
        """The session rows of a batch of token digests, in one query."""
        async with self._database.read() as connection:
            found = {row.token_hash: row for row in await connection.execute(
                SESSIONS_BY_DIGEST, {"digests": list(set(digests))}
            )}
        return [found.get(digest) for digest in digests]

    async def _end_expired(self, session_id: str, tenant_id: str, kind: PrincipalType, principal_id: str, why: str) -> None:
        """End a session that ran out. Nothing is published: its sockets find out on their next
        event, which is answered with the reason before the socket closes."""
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
        await self._end(connection, sessions.c.id == session_id)

    async def end_all(self, connection: AsyncConnection, *, principal_type: PrincipalType, principal_id: str,
                      code: str = "invalid_token") -> int:
        """End every session of a principal; ``code`` is what their open sockets are told."""
        which = and_(sessions.c.principal_type == principal_type.value, sessions.c.principal_id == principal_id)
        return await self._end(connection, which, code=code)

    async def end_for_device(self, connection: AsyncConnection, device_id: str) -> int:
        """End a revoked device's sessions; its sockets close on the device's own DEVICE_REVOKED
        event, which tells them to wipe, so nothing is published here."""
        result = await connection.execute(
            update(sessions).where(sessions.c.device_id == device_id, sessions.c.ended_at.is_(None))
            .values(ended_at=self._clock.now())
        )
        return result.rowcount

    async def _end(self, connection: AsyncConnection, which: ColumnElement[bool], *,
                   code: str = "invalid_token") -> int:
        """End the live sessions ``which`` selects; once committed, every node closes their sockets
        with ``code``."""
        ended = list(await connection.scalars(
            update(sessions).where(which, sessions.c.ended_at.is_(None))
            .values(ended_at=self._clock.now()).returning(sessions.c.id)
        ))
        if ended:
            Database.after_commit(connection, lambda: self._broker.publish(
                SESSIONS_ENDED, {"session_ids": ended, "code": code}))
        return len(ended)

    async def mark_reauthenticated(self, connection: AsyncConnection, session_id: str) -> None:
        await connection.execute(update(sessions).where(sessions.c.id == session_id).values(reauth_at=self._clock.now()))

"""Portal sessions: a patient's page opens one with the link's invitation id and secret and
gets a bearer token, stored only as its SHA-256. A session ends when its invitation ends or
its link is replaced (resend), or after 30 minutes without a request."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal, PrincipalType, Role
from relay.clock import Clock
from relay.errors import Unauthenticated
from relay.ids import new_id, new_token, token_hash
from relay.portal.errors import InvitationNotFound
from relay.portal.lifecycle import Lifecycle, refusal
from relay.portal.records import Invitation, load_invitation
from relay.storage.database import Database
from relay.storage.tables import portal_sessions

TOKEN_PREFIX = "p."
"""Portal tokens start with this (never part of a session token's base64url), so the
dispatcher knows which store to ask."""
IDLE_TIMEOUT = timedelta(minutes=30)
TOUCH_EVERY = timedelta(seconds=15)


@dataclass(frozen=True)
class OpenedSession:
    token: str
    invitation: Invitation


@dataclass(frozen=True)
class PortalSession:
    id: str
    invitation_id: str
    device_id: str | None
    verified: bool


def is_portal_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


class PortalSessions:
    def __init__(self, database: Database, audit: AuditLog, lifecycle: Lifecycle, clock: Clock) -> None:
        self._database = database
        self._audit = audit
        self._lifecycle = lifecycle
        self._clock = clock

    async def open(self, invitation_id: str, secret: str) -> OpenedSession:
        invitation = await self._invitation(invitation_id)
        if not hmac.compare_digest(invitation.secret_hash, token_hash(secret)):
            raise InvitationNotFound()
        invitation = await self._lifecycle.expire_if_due(invitation)
        problem = refusal(invitation)
        if problem is not None:
            raise problem
        now, token, session_id = self._clock.now(), TOKEN_PREFIX + new_token(), new_id()
        async with self._database.transaction() as connection:
            await connection.execute(insert(portal_sessions).values(
                id=session_id, token_hash=token_hash(token), tenant_id=invitation.tenant_id,
                invitation_id=invitation.id, secret_hash=invitation.secret_hash, created_at=now, last_seen_at=now,
            ))
            await self._audit.record(
                connection, AuditAction.INVITATION_OPENED, tenant_id=invitation.tenant_id,
                actor=(PrincipalType.INVITATION.value, invitation.id), object_type="portal_session",
                object_id=session_id, details={"invitation_id": invitation.id},
            )
        return OpenedSession(token, invitation)

    async def authenticate(self, token: str) -> Principal:
        """The portal principal behind a live token: 401 for an unknown, replaced or idle
        session, the invitation's 410 or 423 when it can no longer be used."""
        now = self._clock.now()
        async with self._database.read() as connection:
            row = (await connection.execute(select(portal_sessions).where(
                portal_sessions.c.token_hash == token_hash(token)))).first()
            invitation = None if row is None else await load_invitation(connection, None, row.invitation_id)
        if row is None or invitation is None or row.ended_at is not None and refusal(invitation) is None:
            raise Unauthenticated("the portal session is not valid; open the link again", code="invalid_token")
        invitation = await self._lifecycle.expire_if_due(invitation)
        problem = refusal(invitation)
        if problem is not None:
            raise problem
        if not hmac.compare_digest(row.secret_hash, invitation.secret_hash):
            raise Unauthenticated("this link was replaced by a newer one", code="invalid_token")
        if row.last_seen_at + IDLE_TIMEOUT <= now:
            await self._end(row.id, now)
            raise Unauthenticated("the portal session has expired; open the link again", code="session_expired")
        if now - row.last_seen_at >= TOUCH_EVERY:
            async with self._database.transaction() as connection:
                await connection.execute(update(portal_sessions).where(portal_sessions.c.id == row.id)
                                         .values(last_seen_at=now))
        return Principal(invitation.tenant_id, PrincipalType.INVITATION, invitation.id, Role.PATIENT, row.id,
                         row.device_id, None)

    async def session(self, principal: Principal) -> PortalSession:
        async with self._database.read() as connection:
            row = (await connection.execute(select(portal_sessions).where(
                portal_sessions.c.id == principal.session_id))).one()
        return PortalSession(row.id, row.invitation_id, row.device_id, row.verified_at is not None)

    async def _invitation(self, invitation_id: str) -> Invitation:
        async with self._database.read() as connection:
            return await load_invitation(connection, None, invitation_id)

    async def _end(self, session_id: str, now: datetime) -> None:
        async with self._database.transaction() as connection:
            await connection.execute(update(portal_sessions).where(portal_sessions.c.id == session_id)
                                     .values(ended_at=now))

"""How an invitation changes state after it was sent, and what each change tells its creator.

Ending it (used up, expired, revoked) deletes the contact, the date of birth, the note and any
code, ends its portal sessions and retires its portal devices: they can send nothing more, but
their public identity keys stay in the directory so recipients can still verify photos they
sent. Every change is audited with ids only and pushed to the creator's devices as
``invitation.updated``."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import PrincipalType
from relay.clock import Clock
from relay.messaging.notifier import Notifier
from relay.portal.errors import InvitationEnded, InvitationLocked
from relay.portal.records import ENDED, Invitation, Status, invitation_of, load_invitation
from relay.portal.views import InvitationView
from relay.storage.database import Database
from relay.storage.tables import devices, invitations, portal_sessions

INVITATION_UPDATED = "invitation.updated"
END_ACTIONS = {Status.USED_UP: AuditAction.INVITATION_USED_UP, Status.EXPIRED: AuditAction.INVITATION_EXPIRED,
               Status.REVOKED: AuditAction.INVITATION_REVOKED}
SWEEP_BATCH = 200


def refusal(invitation: Invitation) -> InvitationEnded | InvitationLocked | None:
    """The error a patient gets for an invitation that can no longer be used, else None."""
    if invitation.status in ENDED:
        return InvitationEnded(invitation.status.value)
    if invitation.status is Status.LOCKED:
        return InvitationLocked()
    return None


class Lifecycle:
    def __init__(self, database: Database, audit: AuditLog, notifier: Notifier, clock: Clock) -> None:
        self._database = database
        self._audit = audit
        self._notifier = notifier
        self._clock = clock

    async def end(self, connection: AsyncConnection, invitation: Invitation, status: Status,
                  actor: tuple[str, str | None]) -> bool:
        """In the caller's transaction: end ``invitation`` with ``status``; False if it had already ended."""
        assert status in ENDED
        now = self._clock.now()
        changed = await connection.execute(
            update(invitations).where(invitations.c.id == invitation.id, invitations.c.status.not_in(list(ENDED)))
            .values(status=status.value, contact=None, date_of_birth=None, sealed_note=None, code=None,
                    code_expires_at=None, ended_at=now, updated_at=now)
        )
        if not changed.rowcount:
            return False
        await connection.execute(update(portal_sessions).where(
            portal_sessions.c.invitation_id == invitation.id, portal_sessions.c.ended_at.is_(None)).values(ended_at=now))
        retired = await connection.execute(update(devices).where(
            devices.c.owner_type == PrincipalType.INVITATION.value, devices.c.owner_id == invitation.id,
            devices.c.revoked_at.is_(None)).values(revoked_at=now))
        await self._audit.record(
            connection, END_ACTIONS[status], tenant_id=invitation.tenant_id, actor=actor, object_type="invitation",
            object_id=invitation.id, details={"uploads_used": invitation.uploads_used, "devices_retired":
                                              retired.rowcount},
        )
        return True

    async def expire_if_due(self, invitation: Invitation) -> Invitation:
        """End an invitation whose time is up (before the sweep reaches it); returns it as it now is."""
        if not invitation.expired_at(self._clock.now()):
            return invitation
        async with self._database.transaction() as connection:
            current = await load_invitation(connection, None, invitation.id, lock=True)
            ended = await self.end(connection, current, Status.EXPIRED, ("system", None))
            current = await load_invitation(connection, None, invitation.id)
        if ended:
            await self.notify(current)
        return current

    async def sweep(self) -> int:
        """End every invitation past its expiry; returns how many ended."""
        now, count = self._clock.now(), 0
        while True:
            async with self._database.read() as connection:
                rows = (await connection.execute(select(invitations).where(
                    invitations.c.status.not_in(list(ENDED)), invitations.c.expires_at <= now,
                ).limit(SWEEP_BATCH))).all()
            for row in rows:
                await self.expire_if_due(invitation_of(row))
            count += len(rows)
            if len(rows) < SWEEP_BATCH:
                return count

    async def notify(self, invitation: Invitation) -> None:
        await self._notifier.users((invitation.created_by,), INVITATION_UPDATED,
                                   InvitationView.of(invitation).model_dump(mode="json"))

    async def notify_id(self, invitation_id: str) -> None:
        async with self._database.read() as connection:
            invitation = await load_invitation(connection, None, invitation_id)
        await self.notify(invitation)

"""The portal's gate on the camera relay's uploads: a portal session may have at most
``max_uploads`` uploads completed or in flight; each completion counts, and the last one uses
the invitation up (its contact data go, its sessions and device end)."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal, PrincipalType
from relay.camera.records import BlobState
from relay.clock import Clock
from relay.portal.errors import UploadLimitReached
from relay.portal.lifecycle import Lifecycle, refusal
from relay.portal.records import Status, load_invitation
from relay.storage.tables import blobs, invitations


class PortalUploadGate:
    def __init__(self, audit: AuditLog, lifecycle: Lifecycle, clock: Clock) -> None:
        self._audit = audit
        self._lifecycle = lifecycle
        self._clock = clock

    async def admit(self, connection: AsyncConnection, principal: Principal) -> None:
        if principal.type is not PrincipalType.INVITATION:
            return
        invitation = await load_invitation(connection, principal.tenant_id, principal.id, lock=True)
        problem = refusal(invitation)
        if problem is not None:
            raise problem
        in_flight = await connection.scalar(select(func.count()).select_from(blobs).where(
            blobs.c.tenant_id == principal.tenant_id, blobs.c.sender_type == PrincipalType.INVITATION.value,
            blobs.c.sender_id == principal.id, blobs.c.state == BlobState.UPLOADING.value,
            blobs.c.expires_at > self._clock.now(),
        ))
        if invitation.uploads_used + int(in_flight or 0) >= invitation.max_uploads:
            raise UploadLimitReached(invitation.max_uploads)

    async def completed(self, connection: AsyncConnection, principal: Principal, blob_id: str) -> None:
        if principal.type is not PrincipalType.INVITATION:
            return
        await connection.execute(update(invitations).where(invitations.c.id == principal.id).values(
            uploads_used=invitations.c.uploads_used + 1, updated_at=self._clock.now()))
        invitation = await load_invitation(connection, principal.tenant_id, principal.id, lock=True)
        await self._audit.record(connection, AuditAction.INVITATION_UPLOAD_COMPLETED, tenant_id=principal.tenant_id,
                                 actor=principal.actor, object_type="invitation", object_id=principal.id,
                                 details={"blob_id": blob_id, "uploads_used": invitation.uploads_used,
                                          "consent_id": invitation.consent_id})
        if invitation.uploads_used >= invitation.max_uploads:
            await self._lifecycle.end(connection, invitation, Status.USED_UP, principal.actor)

    async def after_completed(self, principal: Principal) -> None:
        if principal.type is PrincipalType.INVITATION:
            await self._lifecycle.notify_id(principal.id)

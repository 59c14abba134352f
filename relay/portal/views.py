"""The invitation view clinicians read (REST answers and ``invitation.updated`` events):
ids, statuses and counts, never the contact, the date of birth or the note."""

from __future__ import annotations

from datetime import datetime

from relay.http.schema import ResponseBody
from relay.portal.records import Channel, Invitation, Method, Status


class InvitationView(ResponseBody):
    id: str
    status: Status
    channel: Channel
    verification_method: Method
    created_by: str
    created_at: datetime
    expires_at: datetime
    max_uploads: int
    uploads_used: int
    recipient_device_ids: list[str]
    consent_id: str | None
    consent_sha256: str | None
    failed_attempts: int

    @classmethod
    def of(cls, invitation: Invitation) -> InvitationView:
        return cls(
            id=invitation.id, status=invitation.status, channel=invitation.channel,
            verification_method=invitation.verification_method, created_by=invitation.created_by,
            created_at=invitation.created_at, expires_at=invitation.expires_at, max_uploads=invitation.max_uploads,
            uploads_used=invitation.uploads_used, recipient_device_ids=list(invitation.recipient_device_ids),
            consent_id=invitation.consent_id, consent_sha256=invitation.consent_sha256,
            failed_attempts=invitation.failed_attempts,
        )


class InvitationList(ResponseBody):
    invitations: list[InvitationView]

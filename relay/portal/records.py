"""An invitation as the portal services see it: its statuses, channels, verification methods
and the row it is read from (docs/portal.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.portal.errors import InvitationNotFound
from relay.storage.tables import invitations

MAX_ATTEMPTS = 5
"""Wrong codes or dates of birth before an invitation locks."""


class Status(StrEnum):
    SENT = "sent"
    VERIFIED = "verified"
    LOCKED = "locked"
    USED_UP = "used_up"
    EXPIRED = "expired"
    REVOKED = "revoked"


LIVE = frozenset({Status.SENT, Status.VERIFIED})
ENDED = frozenset({Status.USED_UP, Status.EXPIRED, Status.REVOKED})


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class Method(StrEnum):
    CODE = "code"
    DATE_OF_BIRTH = "date_of_birth"


@dataclass(frozen=True)
class Invitation:
    """An invitation's row without its sealed columns (contact, date of birth, note, code)."""

    id: str
    tenant_id: str
    created_by: str
    channel: Channel
    verification_method: Method
    template: str
    secret_hash: str
    key_commitment: str
    recipient_device_ids: tuple[str, ...]
    status: Status
    failed_attempts: int
    max_uploads: int
    uploads_used: int
    consent_id: str | None
    consent_sha256: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    ended_at: datetime | None

    def expired_at(self, now: datetime) -> bool:
        """True when the invitation is still open but its time is up (the sweep has not yet ended it)."""
        return self.status not in ENDED and self.expires_at <= now


def invitation_of(row: Any) -> Invitation:
    return Invitation(
        row.id, row.tenant_id, row.created_by, Channel(row.channel), Method(row.verification_method), row.template,
        row.secret_hash, row.key_commitment, tuple(json.loads(row.recipient_device_ids)), Status(row.status),
        row.failed_attempts, row.max_uploads, row.uploads_used, row.consent_id, row.consent_sha256, row.created_at,
        row.updated_at, row.expires_at, row.ended_at,
    )


async def load_invitation(connection: AsyncConnection, tenant_id: str | None, invitation_id: str, *,
                          lock: bool = False) -> Invitation:
    """The invitation (within ``tenant_id`` when given), or InvitationNotFound."""
    query = select(invitations).where(invitations.c.id == invitation_id)
    if tenant_id is not None:
        query = query.where(invitations.c.tenant_id == tenant_id)
    row = (await connection.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise InvitationNotFound()
    return invitation_of(row)

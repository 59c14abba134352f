"""Who is calling: an authenticated user or integration principal, or a patient's portal session
(an invitation), always inside one tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    CLINICIAN = "clinician"
    ADMIN = "admin"
    AUDITOR = "auditor"
    INTEGRATION = "integration"
    PATIENT = "patient"
    """A patient's portal session (relay/portal): the portal endpoints and its own uploads, nothing else."""


USER_ROLES = frozenset({Role.CLINICIAN, Role.ADMIN, Role.AUDITOR})
ALL_ROLES = USER_ROLES | {Role.INTEGRATION}
"""Every role that belongs to an account; the patient's portal session is not one."""


class PrincipalType(StrEnum):
    USER = "user"
    INTEGRATION = "integration"
    INVITATION = "invitation"


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    type: PrincipalType
    id: str
    role: Role
    session_id: str
    device_id: str | None
    reauth_at: datetime | None
    session_expires_at: datetime | None = None
    """When the session ends regardless of activity (None: the portal's sessions, checked elsewhere)."""

    @property
    def actor(self) -> tuple[str, str]:
        """(actor_type, actor_id) as the audit log records them."""
        return self.type.value, self.id

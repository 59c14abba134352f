"""Who is calling: an authenticated user or integration principal, always inside one tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    CLINICIAN = "clinician"
    ADMIN = "admin"
    AUDITOR = "auditor"
    INTEGRATION = "integration"


USER_ROLES = frozenset({Role.CLINICIAN, Role.ADMIN, Role.AUDITOR})
ALL_ROLES = frozenset(Role)


class PrincipalType(StrEnum):
    USER = "user"
    INTEGRATION = "integration"


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    type: PrincipalType
    id: str
    role: Role
    session_id: str
    device_id: str | None
    reauth_at: datetime | None

    @property
    def actor(self) -> tuple[str, str]:
        """(actor_type, actor_id) as the audit log records them."""
        return self.type.value, self.id

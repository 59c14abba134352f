"""What the messaging part keeps: conversations, their members, and the reasons a message ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

MIN_LIFESPAN = 60
MAX_LIFESPAN = 365 * 24 * 3600


class ConversationKind(StrEnum):
    DIRECT = "direct"
    GROUP = "group"
    CONSULT = "consult"


class MembershipChange(StrEnum):
    CREATED = "created"
    MEMBER_ADDED = "member_added"
    MEMBER_REMOVED = "member_removed"
    MEMBER_LEFT = "member_left"


class MessagePurgeReason(StrEnum):
    """Why a message's ciphertext, or copies still queued, left the relay."""

    DELIVERED = "delivered"
    RECALLED = "recalled"
    EXPIRED = "expired"
    REMOVED = "removed"
    REVOKED = "revoked"


class ReceiptStatus(StrEnum):
    DELIVERED = "delivered"
    READ = "read"


@dataclass(frozen=True)
class Member:
    user_id: str
    joined_at: datetime


@dataclass(frozen=True)
class Conversation:
    id: str
    tenant_id: str
    kind: ConversationKind
    created_by: str
    created_at: datetime
    lifespan_seconds: int
    members: tuple[Member, ...]

    @property
    def member_ids(self) -> frozenset[str]:
        return frozenset(member.user_id for member in self.members)

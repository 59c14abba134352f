"""The server → client socket.io events (docs/realtime.md) as typed values. They carry ids,
times and flags only; ``message.new`` is opened into an IncomingMessage (messaging.py)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

Event = TypeVar("Event")


def parse(cls: type[Event], payload: dict[str, Any]) -> Event:
    """Build ``cls`` from a payload, taking the fields it declares (later additions are ignored)."""
    return cls(**{field.name: payload.get(field.name) for field in fields(cls)})  # type: ignore[arg-type]


RECEIPTS = "message.receipt"


@dataclass(frozen=True)
class Receipt:
    """One entry of ``message.receipt``: a recipient device acknowledged (``delivered``) or read
    a message this user sent. The event carries a list; handlers get one Receipt at a time."""

    message_id: str
    conversation_id: str
    user_id: str
    device_id: str
    status: str
    at: str


@dataclass(frozen=True)
class MessagesDeleted:
    """``message.deleted``: delete these (``recalled`` or ``expired``); the SDK removes them from the inbox."""

    conversation_id: str
    message_ids: list[str]
    reason: str


@dataclass(frozen=True)
class ConversationUpdated:
    """``conversation.updated``: created, member_added, member_removed or member_left."""

    conversation_id: str
    change: str
    user_ids: list[str]


@dataclass(frozen=True)
class ConsultUpdated:
    consult_id: str
    conversation_id: str
    state: str
    offered_to: str | None
    accepted_by: str | None
    escalation_level: int


@dataclass(frozen=True)
class BlobAvailable:
    """``blob.available``: download it with ``client.blobs`` and acknowledge once committed."""

    blob_id: str
    size: int
    sender_device_id: str


@dataclass(frozen=True)
class DeviceRevokedNotice:
    """``device_revoked``: the SDK has already wiped the key file when handlers see this."""

    device_id: str
    wipe: bool


@dataclass(frozen=True)
class SessionEnded:
    """``session_ended``: the relay closed the socket because its session ended; the SDK logs in
    again and reconnects unless ``code`` is ``account_disabled``."""

    code: str


EVENT_TYPES: dict[str, type] = {
    RECEIPTS: Receipt,
    "message.deleted": MessagesDeleted,
    "conversation.updated": ConversationUpdated,
    "consult.updated": ConsultUpdated,
    "blob.available": BlobAvailable,
    "device_revoked": DeviceRevokedNotice,
    "session_ended": SessionEnded,
}

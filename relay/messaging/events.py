"""Client events over socket.io (docs/realtime.md): each one declared with its payload model
and handler, answered through the acknowledgement with ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {...}}``. No error closes the socket."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relay.auth.principal import Principal
from relay.errors import ApiError, InvalidRequest
from relay.http.dispatch import validation_problems
from relay.messaging.service import Messaging

log = logging.getLogger(__name__)

ID = Field(pattern=r"^[0-9a-f]{32}$")
MESSAGE_ID = Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")
MAX_IDS = 500


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SendMessage(Payload):
    conversation_id: str = ID
    message_id: str = MESSAGE_ID
    envelope: bytes
    blob_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")


class MessageIds(Payload):
    message_ids: list[str] = Field(min_length=1, max_length=MAX_IDS)


class RecallMessage(Payload):
    message_id: str = MESSAGE_ID


class FetchQueue(Payload):
    limit: int = Field(100, ge=1, le=MAX_IDS)
    after_seq: int = Field(0, ge=0)


Handler = Callable[[Messaging, Principal, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ClientEvent:
    name: str
    payload: type[Payload]
    handler: Handler


async def send_message(messaging: Messaging, principal: Principal, payload: SendMessage) -> dict[str, Any]:
    sent = await messaging.messages.send(principal, payload.conversation_id, payload.message_id, payload.envelope,
                                         payload.blob_id)
    return {"message_id": sent.message_id, "sent_at": sent.sent_at.isoformat(),
            "expires_at": sent.expires_at.isoformat(), "recipients": list(sent.recipients)}


async def acknowledge(messaging: Messaging, principal: Principal, payload: MessageIds) -> dict[str, Any]:
    return {"acknowledged": await messaging.messages.acknowledge(principal, payload.message_ids)}


async def mark_read(messaging: Messaging, principal: Principal, payload: MessageIds) -> dict[str, Any]:
    return {"read": await messaging.messages.mark_read(principal, payload.message_ids)}


async def recall(messaging: Messaging, principal: Principal, payload: RecallMessage) -> dict[str, Any]:
    purged = await messaging.messages.recall(principal, payload.message_id)
    return {"message_id": payload.message_id, "purged": purged}


async def fetch_queue(messaging: Messaging, principal: Principal, payload: FetchQueue) -> dict[str, Any]:
    found = await messaging.messages.queued(principal, limit=payload.limit + 1, after_seq=payload.after_seq)
    return {"messages": found[: payload.limit], "more": len(found) > payload.limit}


CLIENT_EVENTS: dict[str, ClientEvent] = {
    event.name: event for event in (
        ClientEvent("message.send", SendMessage, send_message),
        ClientEvent("message.ack", MessageIds, acknowledge),
        ClientEvent("message.read", MessageIds, mark_read),
        ClientEvent("message.recall", RecallMessage, recall),
        ClientEvent("queue.fetch", FetchQueue, fetch_queue),
    )
}


class UnknownEvent(InvalidRequest):
    code = "unknown_event"


class InvalidPayload(InvalidRequest):
    code = "invalid_payload"


def error_ack(error: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.details is not None:
        body["details"] = error.details
    if error.retry_after is not None:
        body["retry_after"] = error.retry_after
    return {"ok": False, "error": body}


async def dispatch(messaging: Messaging, principal: Principal, name: str, data: Any) -> dict[str, Any]:
    """Run one client event; every outcome is an acknowledgement."""
    try:
        event = CLIENT_EVENTS.get(name)
        if event is None:
            raise UnknownEvent(f"no client event is called {name[:64]!r}")
        try:
            payload = event.payload.model_validate(data if data is not None else {})
        except ValidationError as error:
            raise InvalidPayload(f"the {name} payload does not match its schema",
                                 details=validation_problems(error)) from None
        return {"ok": True, "result": await event.handler(messaging, principal, payload)}
    except ApiError as error:
        return error_ack(error)
    except Exception:
        log.exception("client event failed", extra={"event": name})
        return {"ok": False, "error": {"code": "internal_error", "message": "the relay could not handle this event"}}

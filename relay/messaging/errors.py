"""Errors a client can cause in conversations and messages (codes: docs/realtime.md, docs/messaging.md)."""

from __future__ import annotations

from relay.errors import Conflict, Forbidden, InvalidRequest, NotFound, PayloadTooLarge


class ConversationNotFound(NotFound):
    code = "conversation_not_found"


class NotMember(Forbidden):
    code = "not_member"


class MembershipRefused(Forbidden):
    code = "membership_refused"


class UnknownMembers(InvalidRequest):
    code = "unknown_members"


class ConsultClosed(Conflict):
    code = "consult_closed"


class InvalidEnvelope(InvalidRequest):
    code = "invalid_envelope"


class SenderMismatch(Forbidden):
    code = "sender_mismatch"


class RecipientNotMember(Forbidden):
    code = "recipient_not_member"


class RecipientsIncomplete(Conflict):
    code = "recipients_incomplete"


class BlobMismatch(InvalidRequest):
    code = "blob_mismatch"


class DuplicateMessageId(Conflict):
    code = "duplicate_message_id"


class MessageTooLarge(PayloadTooLarge):
    code = "message_too_large"


class MessageNotFound(NotFound):
    code = "message_not_found"


class NotSender(Forbidden):
    code = "not_sender"

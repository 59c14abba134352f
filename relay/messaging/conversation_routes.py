"""REST endpoints for conversations (docs/messaging.md); messages themselves travel over socket.io."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from relay.auth.principal import Role
from relay.http.endpoint import Call, RouteTable
from relay.http.schema import RequestBody, ResponseBody
from relay.keys.routes import DeviceView
from relay.messaging.conversations import MAX_MEMBERS
from relay.messaging.records import MAX_LIFESPAN, MIN_LIFESPAN, Conversation, ConversationKind
from relay.runtime_key import RUNTIME

routes = RouteTable("conversations")

CLINICIANS = frozenset({Role.CLINICIAN})
CONVERSATION_PATH = "/api/v1/conversations/{conversation_id}"
UserId = Field(pattern=r"^[0-9a-f]{32}$")


class NewConversation(RequestBody):
    kind: ConversationKind = Field(description="direct or group (consult conversations are made by consults)")
    member_user_ids: list[str] = Field(min_length=1, max_length=MAX_MEMBERS,
                                       description="The other members (the caller is always one)")
    lifespan_seconds: int | None = Field(None, ge=MIN_LIFESPAN, le=MAX_LIFESPAN,
                                         description="How long its messages live; default: the server's")


class NewMembers(RequestBody):
    user_ids: list[str] = Field(min_length=1, max_length=MAX_MEMBERS)


class MemberView(ResponseBody):
    user_id: str
    joined_at: datetime


class ConversationView(ResponseBody):
    id: str
    kind: ConversationKind
    created_by: str
    created_at: datetime
    lifespan_seconds: int
    members: list[MemberView]

    @classmethod
    def of(cls, conversation: Conversation) -> ConversationView:
        return cls(
            id=conversation.id, kind=conversation.kind, created_by=conversation.created_by,
            created_at=conversation.created_at, lifespan_seconds=conversation.lifespan_seconds,
            members=[MemberView(user_id=member.user_id, joined_at=member.joined_at)
                     for member in conversation.members],
        )


class ConversationDetail(ConversationView):
    recipients: list[DeviceView] = Field(
        description="Every device a message must be sealed to now: the active devices of current members"
    )


class ConversationList(ResponseBody):
    conversations: list[ConversationView]


@routes.post("/api/v1/conversations", summary="Start a direct or group conversation (a direct one that exists "
             "already is returned)", roles=CLINICIANS, body=NewConversation, response=ConversationView, status=201)
async def create_conversation(call: Call[NewConversation]) -> ConversationView:
    body = call.body
    conversation = await call.request.app[RUNTIME].messaging.conversations.create(
        call.caller, body.kind, body.member_user_ids, body.lifespan_seconds
    )
    return ConversationView.of(conversation)


@routes.get("/api/v1/conversations", summary="The caller's conversations", roles=CLINICIANS,
            response=ConversationList)
async def list_conversations(call: Call) -> ConversationList:
    found = await call.request.app[RUNTIME].messaging.conversations.list_for(call.caller)
    return ConversationList(conversations=[ConversationView.of(conversation) for conversation in found])


@routes.get(CONVERSATION_PATH, summary="A conversation's members and the devices to seal to, with their keys",
            roles=CLINICIANS, response=ConversationDetail)
async def get_conversation(call: Call) -> ConversationDetail:
    conversation, recipients = await call.request.app[RUNTIME].messaging.conversations.get(
        call.caller, call.param("conversation_id")
    )
    return ConversationDetail(**ConversationView.of(conversation).model_dump(),
                              recipients=[DeviceView.of(device) for device in recipients])


@routes.post(CONVERSATION_PATH + "/members", summary="Add members to a group conversation", roles=CLINICIANS,
             body=NewMembers, response=ConversationView)
async def add_members(call: Call[NewMembers]) -> ConversationView:
    conversation = await call.request.app[RUNTIME].messaging.conversations.add_members(
        call.caller, call.param("conversation_id"), call.body.user_ids
    )
    return ConversationView.of(conversation)


@routes.delete(CONVERSATION_PATH + "/members/{user_id}", summary="Remove a member (the creator) or leave "
               "(the member themself); what still waits for their devices is purged", roles=CLINICIANS,
               response=ConversationView)
async def remove_member(call: Call) -> ConversationView:
    conversation = await call.request.app[RUNTIME].messaging.conversations.remove_member(
        call.caller, call.param("conversation_id"), call.param("user_id")
    )
    return ConversationView.of(conversation)

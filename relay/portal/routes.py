"""Clinicians' REST endpoints for patient portal invitations (docs/portal.md)."""

from __future__ import annotations

import base64
import binascii
from datetime import date
from typing import Annotated, Literal

from pydantic import Field

from relay.auth.principal import Role
from relay.errors import InvalidRequest
from relay.http.endpoint import Call, RouteTable
from relay.http.schema import RequestBody
from relay.portal.invitations import Link, NewInvitation
from relay.portal.records import Channel, Method
from relay.portal.templates import DEFAULT_TEMPLATE
from relay.portal.views import InvitationList, InvitationView
from relay.runtime_key import RUNTIME

routes = RouteTable("invitations")

INVITERS = frozenset({Role.CLINICIAN, Role.ADMIN})
LINK_PART = r"^[A-Za-z0-9_-]{43}$"
MAX_NOTE_BYTES = 4096
ID = r"^[0-9a-f]{32}$"


class CodeVerification(RequestBody):
    method: Literal["code"]


class BirthDateVerification(RequestBody):
    method: Literal["date_of_birth"]
    date_of_birth: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD; encrypted at rest")


class LinkParts(RequestBody):
    link_secret: str = Field(pattern=LINK_PART, description="32 random bytes, unpadded base64url")
    key_commitment: str = Field(pattern=LINK_PART, description="SHA-256 of the recipients' identity keys")
    sealed_note: str | None = Field(None, max_length=5462, pattern=r"^[A-Za-z0-9_-]*$",
                                    description="Unpadded base64url, at most 4096 bytes")

    def link(self) -> Link:
        return Link(self.link_secret, self.key_commitment, None if self.sealed_note is None else _note(self.sealed_note))


class NewInvitationBody(LinkParts):
    channel: Channel
    contact: str = Field(min_length=3, max_length=254, description="E-mail address or E.164 number; never returned")
    verification: Annotated[CodeVerification | BirthDateVerification, Field(discriminator="method")]
    expires_in: int | None = Field(None, description="Seconds, 300 to 2592000; default portal_invitation_lifetime")
    max_uploads: int = Field(5, ge=1, le=20)
    recipient_device_ids: list[Annotated[str, Field(pattern=ID)]] = Field(min_length=1, max_length=20)
    template: str = Field(DEFAULT_TEMPLATE, max_length=32)


def _note(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidRequest("sealed_note must be unpadded base64url", code="invalid_note") from None
    if not raw or len(raw) > MAX_NOTE_BYTES:
        raise InvalidRequest(f"sealed_note must be 1 to {MAX_NOTE_BYTES} bytes", code="invalid_note")
    return raw


def birth_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest("date_of_birth must be a real date, YYYY-MM-DD", code="invalid_date_of_birth") from None


@routes.post("/api/v1/invitations", summary="Invite a patient to send photos: create and send the link",
             roles=INVITERS, body=NewInvitationBody, response=InvitationView, status=201)
async def create_invitation(call: Call[NewInvitationBody]) -> InvitationView:
    body = call.body
    verification = body.verification
    invitation = await call.request.app[RUNTIME].portal.invitations.create(call.caller, NewInvitation(
        channel=body.channel, contact=body.contact, method=Method(verification.method),
        date_of_birth=birth_date(verification.date_of_birth) if isinstance(verification, BirthDateVerification)
        else None,
        recipient_device_ids=tuple(body.recipient_device_ids), link=body.link(), expires_in=body.expires_in,
        max_uploads=body.max_uploads, template=body.template,
    ))
    return InvitationView.of(invitation)


@routes.get("/api/v1/invitations", summary="The caller's invitations (an admin: the tenant's), newest first",
            roles=INVITERS, response=InvitationList)
async def list_invitations(call: Call) -> InvitationList:
    found = await call.request.app[RUNTIME].portal.invitations.list(call.caller)
    return InvitationList(invitations=[InvitationView.of(invitation) for invitation in found])


@routes.get("/api/v1/invitations/{invitation_id}", summary="One invitation", roles=INVITERS,
            response=InvitationView)
async def get_invitation(call: Call) -> InvitationView:
    return InvitationView.of(await call.request.app[RUNTIME].portal.invitations.get(
        call.caller, call.param("invitation_id")))


@routes.post("/api/v1/invitations/{invitation_id}/resend",
             summary="Send the invitation again with a new link; the old link stops working", roles=INVITERS,
             body=LinkParts, response=InvitationView)
async def resend_invitation(call: Call[LinkParts]) -> InvitationView:
    return InvitationView.of(await call.request.app[RUNTIME].portal.invitations.resend(
        call.caller, call.param("invitation_id"), call.body.link()))


@routes.post("/api/v1/invitations/{invitation_id}/revoke",
             summary="Revoke an invitation: its contact data are deleted and its sessions end", roles=INVITERS,
             response=InvitationView)
async def revoke_invitation(call: Call) -> InvitationView:
    return InvitationView.of(await call.request.app[RUNTIME].portal.invitations.revoke(
        call.caller, call.param("invitation_id")))

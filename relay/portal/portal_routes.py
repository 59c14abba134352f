"""The patient's page's REST endpoints (docs/portal.md, "Portal API"). Uploads go through the
tus endpoints under /api/v1/uploads with the same portal token."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from relay.auth.principal import Role
from relay.errors import InvalidRequest
from relay.http.endpoint import Call, RouteTable
from relay.http.schema import RequestBody, ResponseBody
from relay.keys.routes import SignedKeyUpload, SignedKeyView
from relay.keys.signatures import PUBLIC_KEY_BYTES, decode, encode
from relay.portal.records import Method
from relay.portal.routes import ID, LINK_PART, birth_date
from relay.runtime_key import RUNTIME

routes = RouteTable("portal")

PATIENT = frozenset({Role.PATIENT})


class OpenSession(RequestBody):
    invitation_id: str = Field(pattern=ID)
    secret: str = Field(pattern=LINK_PART, description="The secret from the link's fragment")


class SessionView(ResponseBody):
    token: str
    verification_method: Method
    expires_at: datetime
    uploads_left: int


class Answer(RequestBody):
    code: str | None = Field(None, pattern=r"^[0-9]{6}$")
    date_of_birth: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")


class RecipientView(ResponseBody):
    device_id: str
    identity_key: str
    encryption_key: SignedKeyView


class RecipientBundle(ResponseBody):
    recipients: list[RecipientView]
    sealed_note: str | None = Field(description="Unpadded base64url of the note the clinician's client sealed "
                                                "under the link's secret (docs/portal.md, \"The sealed note\")")


class Consent(RequestBody):
    consent_id: str = Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")
    consent_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 (hex) of the consent's canonical JSON")


class SenderDevice(RequestBody):
    identity_key: str = Field(min_length=1, max_length=128, description="Unpadded base64url Ed25519 public key")
    encryption_key: SignedKeyUpload


class SenderDeviceView(ResponseBody):
    device_id: str


@routes.post("/api/v1/portal/sessions", summary="Open a portal session with the link's invitation id and secret",
             roles=None, body=OpenSession, response=SessionView, status=201)
async def open_portal_session(call: Call[OpenSession]) -> SessionView:
    opened = await call.request.app[RUNTIME].portal.sessions.open(call.body.invitation_id, call.body.secret)
    invitation = opened.invitation
    return SessionView(token=opened.token, verification_method=invitation.verification_method,
                       expires_at=invitation.expires_at, uploads_left=invitation.max_uploads - invitation.uploads_used)


@routes.post("/api/v1/portal/code", summary="Send a new one-time code to the patient's contact", roles=PATIENT,
             status=204)
async def send_portal_code(call: Call) -> None:
    await call.request.app[RUNTIME].portal.verification.send_code(call.caller)


@routes.post("/api/v1/portal/verification", summary="Answer the verification: the code or the date of birth",
             roles=PATIENT, body=Answer, status=204)
async def verify_portal_session(call: Call[Answer]) -> None:
    body = call.body
    if (body.code is None) == (body.date_of_birth is None):
        raise InvalidRequest("send either code or date_of_birth", code="invalid_answer")
    await call.request.app[RUNTIME].portal.verification.verify(
        call.caller, code=body.code,
        date_of_birth=None if body.date_of_birth is None else birth_date(body.date_of_birth))


@routes.get("/api/v1/portal/recipients", summary="The recipients' public keys (to check against the link's commitment) and the sealed note",
            roles=PATIENT, response=RecipientBundle)
async def portal_recipients(call: Call) -> RecipientBundle:
    bundle = await call.request.app[RUNTIME].portal.patient.recipients(call.caller)
    return RecipientBundle(recipients=[
        RecipientView(device_id=each.device_id, identity_key=encode(each.identity_key),
                      encryption_key=SignedKeyView.of(each.encryption_key)) for each in bundle.recipients],
        sealed_note=None if bundle.sealed_note is None else encode(bundle.sealed_note))


@routes.post("/api/v1/portal/consent", summary="Record the consent's id and hash (the consent travels sealed)",
             roles=PATIENT, body=Consent, status=204)
async def record_portal_consent(call: Call[Consent]) -> None:
    await call.request.app[RUNTIME].portal.patient.record_consent(call.caller, call.body.consent_id,
                                                                   call.body.consent_sha256)


@routes.post("/api/v1/portal/device", summary="Register the page's ephemeral sender device", roles=PATIENT,
             body=SenderDevice, response=SenderDeviceView, status=201)
async def register_portal_device(call: Call[SenderDevice]) -> SenderDeviceView:
    device = await call.request.app[RUNTIME].portal.patient.register_device(
        call.caller, decode(call.body.identity_key, length=PUBLIC_KEY_BYTES, field="identity_key"),
        call.body.encryption_key.decoded("encryption_key"))
    return SenderDeviceView(device_id=device.id)

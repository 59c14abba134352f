"""The patient portal from the outside: a mail server and a Twilio stand-in that keep what they
are sent, the clinician's link parts, and the patient's page played through the HTTP API as
clients/web/src/portal does it (open, verify, check the key commitment, consent, register the
ephemeral device, seal with relay_client.envelope and upload with tus)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field, replace
from email import message_from_bytes, policy
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from nacl.signing import VerifyKey
from relay_client.envelope import ClinicalMetadata, Consent, Manifest, seal_bytes
from relay_client.envelope.keys import Recipient
from relay_client.envelope.manifest import canonical_json
from relay_client.invitations import PageNote, open_note, seal_note

from tests.support.devices import ENCRYPTION_KEY_DOMAIN, DeviceKeys, RegisteredDevice, b64url, signed_message, unb64url
from tests.support.envelopes import TUS, keyring_of, metadata, patch
from tests.support.harness import Relay, free_port

LINK = re.compile(r"https?://[^\s/]+/p/(?P<id>[0-9a-f]{32})#(?P<secret>[A-Za-z0-9_-]{43})\.(?P<commitment>[A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class Mail:
    to: tuple[str, ...]
    subject: str
    body: str


class MailServer:
    """An aiosmtpd server on 127.0.0.1 keeping every message it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: asyncio.Queue[Mail] = asyncio.Queue()
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed: Any = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        await self.received.put(Mail(tuple(envelope.rcpt_tos), str(parsed["Subject"]),
                                     parsed.get_body(preferencelist=("plain",)).get_content()))
        return "250 OK"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SMTP(self, hostname="stand-in"), "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def next(self, timeout: float = 10) -> Mail:
        return await asyncio.wait_for(self.received.get(), timeout)


@dataclass
class TwilioStandIn:
    """Twilio's Messages endpoint on 127.0.0.1: checks Basic auth and the form, keeps the messages."""

    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))
    from_number: str = "+15005550006"
    port: int = field(default_factory=free_port)
    received: asyncio.Queue[dict[str, str]] = field(default_factory=asyncio.Queue)
    refused: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> dict[str, str]:
        return {"twilio_account_sid": self.account_sid, "twilio_auth_token": self.auth_token,
                "twilio_from_number": self.from_number, "twilio_api_base_url": self.url}

    async def messages(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != expected or request.match_info["sid"] != self.account_sid:
            self.refused.append("auth")
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401}, status=401)
        form = dict(await request.post())
        if set(form) != {"To", "From", "Body"} or form["From"] != self.from_number:
            self.refused.append(f"form {sorted(form)}")
            return web.json_response({"code": 21604, "message": "bad form", "status": 400}, status=400)
        await self.received.put({key: str(value) for key, value in form.items()})
        return web.json_response({"sid": "SM" + secrets.token_hex(16), "status": "queued", "to": form["To"],
                                  "from": form["From"], "body": form["Body"]}, status=201)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.messages)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def next(self, timeout: float = 10) -> dict[str, str]:
        return await asyncio.wait_for(self.received.get(), timeout)


def commitment_of(devices: list[tuple[str, str]]) -> str:
    """docs/portal.md: base64url SHA-256 of the canonical JSON of (device id, identity key) pairs."""
    document = {"recipients": [{"device_id": device_id, "identity_key": identity_key}
                               for device_id, identity_key in sorted(devices)], "v": 1}
    return b64url(hashlib.sha256(canonical_json(document)).digest())


@dataclass(frozen=True)
class LinkParts:
    secret: str
    commitment: str
    note: PageNote | None = None

    def body(self) -> dict[str, str]:
        parts = {"link_secret": self.secret, "key_commitment": self.commitment}
        if self.note is not None:
            parts["sealed_note"] = b64url(seal_note(self.note, self.secret, self.commitment))
        return parts


def link_parts(recipients: list[RegisteredDevice], note: PageNote | None = None) -> LinkParts:
    return LinkParts(secrets.token_urlsafe(32), commitment_of([(d.id, d.keys.identity_key) for d in recipients]), note)


@dataclass(frozen=True)
class Link:
    invitation_id: str
    secret: str
    commitment: str


def link_in(text: str) -> Link:
    found = LINK.search(text)
    assert found is not None, "no portal link in the message"
    return Link(found["id"], found["secret"], found["commitment"])


async def invite(relay: Relay, token: str, recipients: list[RegisteredDevice], *, contact: str = "pat@example.org",
                 channel: str = "email", verification: dict[str, str] | None = None, note: PageNote | None = None,
                 **extra: Any) -> dict[str, Any]:
    response = await relay.call("POST", "/api/v1/invitations", token=token, json={
        "channel": channel, "contact": contact, "verification": verification or {"method": "code"},
        "recipient_device_ids": [device.id for device in recipients], **link_parts(recipients, note).body(), **extra})
    assert response.status == 201, await response.text()
    return dict(await response.json())


@dataclass
class PatientPage:
    """What clients/web/src/portal does, step by step, through the HTTP API."""

    relay: Relay
    link: Link
    token: str = ""
    device: RegisteredDevice | None = None
    consent: Consent | None = None
    recipients: list[Recipient] = field(default_factory=list)
    note: PageNote | None = None

    async def open(self) -> Any:
        response = await self.relay.call("POST", "/api/v1/portal/sessions", json={
            "invitation_id": self.link.invitation_id, "secret": self.link.secret})
        if response.status == 201:
            self.token = (await response.json())["token"]
        return response

    async def ask_code(self) -> Any:
        return await self.relay.call("POST", "/api/v1/portal/code", token=self.token)

    async def verify(self, **answer: str) -> Any:
        return await self.relay.call("POST", "/api/v1/portal/verification", token=self.token, json=answer)

    async def fetch_recipients(self) -> list[Recipient]:
        """The key bundle, refused unless it matches the link's commitment and every key verifies;
        the sealed note that comes with it is opened into ``note``."""
        response = await self.relay.call("GET", "/api/v1/portal/recipients", token=self.token)
        assert response.status == 200, await response.text()
        answer = await response.json()
        bundle = answer["recipients"]
        sealed = answer["sealed_note"]
        self.note = None if sealed is None else open_note(unb64url(sealed), self.link.secret, self.link.commitment)
        pairs = [(entry["device_id"], entry["identity_key"]) for entry in bundle]
        if commitment_of(pairs) != self.link.commitment:
            raise ValueError("the key bundle does not match the link's commitment")
        self.recipients = []
        for entry in bundle:
            key = entry["encryption_key"]
            VerifyKey(unb64url(entry["identity_key"])).verify(
                signed_message(ENCRYPTION_KEY_DOMAIN, key["key_id"], unb64url(key["public_key"])),
                unb64url(key["signature"]))
            public_key = X25519PublicKey.from_public_bytes(unb64url(key["public_key"]))
            self.recipients.append(Recipient(entry["device_id"], key["key_id"], public_key))
        return self.recipients

    async def agree(self, typed_name: str = "Pat Example", scopes: tuple[str, ...] = ("treatment",)) -> Any:
        self.consent = Consent(f"consent-{secrets.token_hex(8)}", scopes, typed_name,
                               self.relay.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                               hashlib.sha256(b"the consent text shown").hexdigest())
        return await self.relay.call("POST", "/api/v1/portal/consent", token=self.token, json={
            "consent_id": self.consent.id, "consent_sha256": self.consent.sha256()})

    async def register_device(self) -> Any:
        keys = DeviceKeys()
        response = await self.relay.call("POST", "/api/v1/portal/device", token=self.token, json={
            "identity_key": keys.identity_key, "encryption_key": keys.encryption_upload()})
        if response.status == 201:
            device_id = (await response.json())["device_id"]
            self.device = RegisteredDevice(device_id, keys, {"id": device_id})
        return response

    async def ready(self, code: str | None = None, date_of_birth: str | None = None,
                    typed_name: str = "Pat Example", opened: bool = False) -> None:
        """Open (unless ``opened``), verify, check the bundle, agree and register: everything before an upload."""
        assert opened or (await self.open()).status == 201
        answer = {"code": code} if code is not None else {"date_of_birth": date_of_birth or ""}
        response = await self.verify(**answer)
        assert response.status == 204, await response.text()
        await self.fetch_recipients()
        assert (await self.agree(typed_name)).status == 204
        response = await self.register_device()
        assert response.status == 201, await response.text()

    def manifest(self) -> Manifest:
        assert self.consent is not None
        given = self.note.clinical if self.note is not None and self.note.clinical is not None else ClinicalMetadata()
        return Manifest("image/jpeg", replace(given, consent_ref=self.consent.id), source="patient_portal",
                        consent=self.consent)

    async def seal(self, photo: bytes, recipients: list[Recipient] | None = None) -> bytes:
        assert self.device is not None
        return await seal_bytes(self.manifest(), photo, sender=keyring_of(self.device).sender,
                                recipients=recipients if recipients is not None else self.recipients)

    async def create_upload(self, envelope: bytes) -> Any:
        return await self.relay.call("POST", "/api/v1/uploads", token=self.token, headers=TUS | {
            "Upload-Length": str(len(envelope)), "Upload-Metadata": metadata(envelope)})

    async def upload(self, envelope: bytes) -> tuple[str, Any]:
        """tus creation and one PATCH; (location, the PATCH's answer)."""
        created = await self.create_upload(envelope)
        assert created.status == 201, await created.text()
        location = created.headers["Location"]
        return location, await patch(self.relay, self.token, location, 0, envelope)

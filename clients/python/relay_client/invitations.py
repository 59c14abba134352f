"""Patient portal invitations from the clinician's side (docs/portal.md): the SDK reads the
recipients from the key directory and verifies them as a sender must, commits to their
identity keys, generates the link's secret, seals the page's note under it (a text for the
patient and the clinical references the page puts into every photo's manifest), and sends only
the secret, the commitment and the sealed note to the relay.

    invitation = await client.invitations.create(
        channel="email", contact="patient@example.org", recipients=[my_device_id, emr_device_id],
        verification={"method": "code"}, note=PageNote("Please photograph the wound from two sides.",
                                                        ClinicalMetadata(patient_ref="Patient/123")))
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from relay_client.directory import Directory, DirectoryDevice
from relay_client.encoding import b64url
from relay_client.envelope.manifest import ClinicalMetadata, canonical_json
from relay_client.http import RelayHttp

NOTE_INFO = b"relay/v1/portal-note"
NOTE_VERSION = 1
MAX_NOTE_CHARACTERS = 2000
COMMITMENT_VERSION = 1


def key_commitment(devices: Sequence[DirectoryDevice]) -> str:
    """Unpadded base64url SHA-256 of the canonical JSON of the recipients' identity keys."""
    document = {"recipients": [{"device_id": device.id, "identity_key": b64url(device.identity_key)}
                               for device in sorted(devices, key=lambda device: device.id)],
                "v": COMMITMENT_VERSION}
    return b64url(hashlib.sha256(canonical_json(document)).digest())


def note_key(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=NOTE_INFO).derive(secret.encode("ascii"))


CLINICAL_FIELDS = ("patient_ref", "encounter_ref", "body_site", "laterality")
"""What the clinician may tell the page to put into the manifest; the page adds the consent and the time."""


@dataclass(frozen=True)
class PageNote:
    """What the clinician's client seals for the page: a text shown to the patient once verified,
    and clinical references copied into each photo's manifest (so an EMR adapter finds the patient)."""

    text: str | None = None
    clinical: ClinicalMetadata | None = None

    def __post_init__(self) -> None:
        if self.text is not None and not 1 <= len(self.text) <= MAX_NOTE_CHARACTERS:
            raise ValueError(f"a note's text is 1 to {MAX_NOTE_CHARACTERS} characters")
        if self.clinical is not None and any(getattr(self.clinical, name) is not None for name in
                                             ("captured_at", "captured_by", "consent_ref")):
            raise ValueError(f"a note's clinical references are among {', '.join(CLINICAL_FIELDS)}")

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"v": NOTE_VERSION}
        if self.text is not None:
            document["text"] = self.text
        if self.clinical is not None:
            document["clinical"] = {name: getattr(self.clinical, name) for name in CLINICAL_FIELDS
                                    if getattr(self.clinical, name) is not None}
        return document


def seal_note(note: PageNote, secret: str, commitment: str) -> bytes:
    """nonce || AES-256-GCM(HKDF(secret), nonce, canonical JSON of the note, aad = commitment)."""
    nonce = os.urandom(12)
    return nonce + AESGCM(note_key(secret)).encrypt(nonce, canonical_json(note.to_json()), commitment.encode("ascii"))


def open_note(sealed: bytes, secret: str, commitment: str) -> PageNote:
    document = json.loads(AESGCM(note_key(secret)).decrypt(sealed[:12], sealed[12:], commitment.encode("ascii")))
    clinical = document.get("clinical")
    return PageNote(document.get("text"), None if clinical is None else ClinicalMetadata(**clinical))


@dataclass(frozen=True)
class SentInvitation:
    """The invitation view and the link the patient got (kept only by the caller; the relay forgets it)."""

    view: dict[str, Any]
    link: str

    @property
    def id(self) -> str:
        return str(self.view["id"])


class Invitations:
    def __init__(self, http: RelayHttp, directory: Directory) -> None:
        self._http = http
        self._directory = directory

    async def create(self, *, channel: str, contact: str, recipients: Sequence[str],
                     verification: dict[str, str] | None = None, expires_in: int | None = None,
                     max_uploads: int = 5, note: PageNote | None = None, template: str = "standard"
                     ) -> SentInvitation:
        parts = await self._link_parts(recipients, note)
        body: dict[str, Any] = {
            "channel": channel, "contact": contact, "verification": verification or {"method": "code"},
            "max_uploads": max_uploads, "recipient_device_ids": sorted(set(recipients)), "template": template,
            **parts,
        }
        if expires_in is not None:
            body["expires_in"] = expires_in
        view = await self._http.call("POST", "/api/v1/invitations", json=body)
        return SentInvitation(view, self._link(view["id"], parts))

    async def list(self) -> list[dict[str, Any]]:
        return list((await self._http.call("GET", "/api/v1/invitations"))["invitations"])

    async def get(self, invitation_id: str) -> dict[str, Any]:
        return dict(await self._http.call("GET", f"/api/v1/invitations/{invitation_id}"))

    async def resend(self, invitation_id: str, *, note: PageNote | None = None) -> SentInvitation:
        """Send a new link (new secret, commitment re-read from the directory); the old one stops working."""
        current = await self.get(invitation_id)
        parts = await self._link_parts(current["recipient_device_ids"], note)
        view = await self._http.call("POST", f"/api/v1/invitations/{invitation_id}/resend", json=parts)
        return SentInvitation(view, self._link(invitation_id, parts))

    async def revoke(self, invitation_id: str) -> dict[str, Any]:
        return dict(await self._http.call("POST", f"/api/v1/invitations/{invitation_id}/revoke"))

    async def _link_parts(self, recipients: Sequence[str], note: PageNote | None) -> dict[str, str]:
        devices = []
        for device_id in sorted(set(recipients)):
            device = await self._directory.device(device_id)
            self._directory.recipient(device)
            devices.append(device)
        secret = secrets.token_urlsafe(32)
        commitment = key_commitment(devices)
        parts = {"link_secret": secret, "key_commitment": commitment}
        if note is not None:
            parts["sealed_note"] = b64url(seal_note(note, secret, commitment))
        return parts

    def _link(self, invitation_id: str, parts: dict[str, str]) -> str:
        return f"{self._http.base_url}/p/{invitation_id}#{parts['link_secret']}.{parts['key_commitment']}"

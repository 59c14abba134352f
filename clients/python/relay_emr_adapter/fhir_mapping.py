"""From an opened image and its manifest to one FHIR R4 transaction Bundle (docs/emr-adapter.md,
"Profiles"). Every resource is created conditionally (``ifNoneExist``) on a stable identifier
derived from the sender's device and the envelope id, so filing the same envelope again, after
a retry or a restart, matches what the EMR already holds instead of adding a duplicate."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from relay_client.envelope import ClinicalMetadata

from relay_emr_adapter.config import Profile

RELAY_USER_SYSTEM = "urn:relay:user"
RELAY_DEVICE_SYSTEM = "urn:relay:device"
MEDIA_TYPE = "http://terminology.hl7.org/CodeSystem/media-type"
LOINC = "http://loinc.org"
PHOTO_LOINC = ("72170-4", "Photographic image")
US_CORE_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"


@dataclass(frozen=True)
class Filing:
    """Everything a profile needs; ``content`` is the image exactly as sealed."""

    identifier_system: str
    envelope_id: str
    sender_device_id: str
    content_type: str
    content: bytes
    clinical: ClinicalMetadata
    patient_id: str
    width: int
    height: int
    patient_submitted: bool

    @property
    def identifier_value(self) -> str:
        return f"{self.sender_device_id}.{self.envelope_id}"

    @property
    def identifier(self) -> dict[str, str]:
        return {"system": self.identifier_system, "value": self.identifier_value}

    def full_url(self, kind: str) -> str:
        """A transaction-local ``urn:uuid:`` for ``kind``, the same on every attempt."""
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{self.identifier_system}|{self.identifier_value}|{kind}')}"


def build_bundle(filing: Filing, profile: Profile, attachment: tuple[str, bytes] | None = None) -> dict[str, Any]:
    """The transaction Bundle for ``profile``. ``attachment`` is (content type, bytes) when the
    profile files a wrapped form of the image (PDF, DICOM); else the image itself."""
    content_type, data = attachment or (filing.content_type, filing.content)
    binary_url = filing.full_url("Binary")
    binary = {"resourceType": "Binary", "contentType": content_type, "data": base64.b64encode(data).decode(),
              "meta": {"tag": [{"system": filing.identifier_system, "code": filing.identifier_value}]}}
    attached = _attachment(filing, content_type, data, binary_url)
    document = _media(filing, attached) if profile is Profile.MEDIA else _document_reference(filing, attached)
    kind = document["resourceType"]
    search = f"{filing.identifier_system}|{filing.identifier_value}"
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": binary_url, "resource": binary,
         "request": {"method": "POST", "url": "Binary", "ifNoneExist": f"_tag={search}"}},
        {"fullUrl": filing.full_url(kind), "resource": document,
         "request": {"method": "POST", "url": kind, "ifNoneExist": f"identifier={search}"}},
    ]}


def _attachment(filing: Filing, content_type: str, data: bytes, url: str) -> dict[str, Any]:
    attachment: dict[str, Any] = {
        "contentType": content_type, "url": url, "size": len(data),
        # FHIR R4 defines Attachment.hash as the base64 SHA-1 of the data (integrity, not security).
        "hash": base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode(),
    }
    if filing.clinical.captured_at:
        attachment["creation"] = filing.clinical.captured_at
    return attachment


def _body_site(clinical: ClinicalMetadata) -> str | None:
    if clinical.body_site is None:
        return None
    if clinical.laterality in (None, "not_applicable"):
        return clinical.body_site
    return f"{clinical.body_site} ({clinical.laterality})"


def _operator(clinical: ClinicalMetadata) -> dict[str, Any] | None:
    if clinical.captured_by is None:
        return None
    return {"identifier": {"system": RELAY_USER_SYSTEM, "value": clinical.captured_by}}


def _device(filing: Filing) -> dict[str, Any]:
    return {"identifier": {"system": RELAY_DEVICE_SYSTEM, "value": filing.sender_device_id},
            "display": "Relay secure camera"}


def _encounter(clinical: ClinicalMetadata) -> dict[str, str] | None:
    ref = clinical.encounter_ref
    return {"reference": ref} if ref and ref.startswith("Encounter/") else None


def _note(filing: Filing) -> str:
    consent = filing.clinical.consent_ref or "none"
    source = "submitted by the patient" if filing.patient_submitted else "captured in the Relay secure camera"
    return f"Photo {source}; Relay envelope {filing.envelope_id}; consent {consent}."


def _media(filing: Filing, attachment: dict[str, Any]) -> dict[str, Any]:
    clinical = filing.clinical
    media: dict[str, Any] = {
        "resourceType": "Media", "identifier": [filing.identifier], "status": "completed",
        "type": {"coding": [{"system": MEDIA_TYPE, "code": "image", "display": "Image"}]},
        "subject": {"reference": f"Patient/{filing.patient_id}"},
        "device": _device(filing), "width": filing.width, "height": filing.height,
        "note": [{"text": _note(filing)}], "content": attachment,
    }
    optional = {"encounter": _encounter(clinical), "createdDateTime": clinical.captured_at,
                "operator": _operator(clinical),
                "bodySite": {"text": site} if (site := _body_site(clinical)) else None}
    return media | {key: value for key, value in optional.items() if value is not None}


def _document_reference(filing: Filing, attachment: dict[str, Any]) -> dict[str, Any]:
    """R4 DocumentReference, US Core shaped; a patient's own photo is ``docStatus: preliminary``
    (a mediated submission, until a clinician reviewed it) and authored by the patient."""
    clinical = filing.clinical
    patient = {"reference": f"Patient/{filing.patient_id}"}
    author = patient if filing.patient_submitted else _operator(clinical)
    document: dict[str, Any] = {
        "resourceType": "DocumentReference", "identifier": [filing.identifier], "status": "current",
        "docStatus": "preliminary" if filing.patient_submitted else "final",
        "type": {"coding": [{"system": LOINC, "code": PHOTO_LOINC[0], "display": PHOTO_LOINC[1]}]},
        "category": [{"coding": [{"system": US_CORE_CATEGORY, "code": "clinical-note", "display": "Clinical Note"}]}],
        "subject": patient,
        "date": clinical.captured_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "content": [{"attachment": attachment}],
        "context": {"related": [_device(filing)]},
    }
    if author is not None:
        document["author"] = [author]
    if (site := _body_site(clinical)) is not None:
        document["description"] = site
    if (encounter := _encounter(clinical)) is not None:
        document["context"]["encounter"] = [encounter]
    return document

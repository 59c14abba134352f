"""One blob, start to end: download the ciphertext (to a private temporary file; ciphertext
only), verify the sender against the key directory, open the envelope in memory, check the
consent and the image, map it to FHIR, file it, and only then acknowledge it; or reject it with
a reason code the sender sees. Every step is journaled by blob id, so a restart neither loses
nor duplicates a filing."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from relay_client.blobs import temporary_path
from relay_client.envelope import EnvelopeError, Manifest, read_envelope
from relay_client.envelope.streams import read_file
from relay_client.errors import RelayApiError, UntrustedDevice
from relay_client.integration import IntegrationClient
from relay_client.transfer import TRANSIENT_ERRORS

from relay_emr_adapter.config import Config, Profile
from relay_emr_adapter.consent import check_consent
from relay_emr_adapter.emr_client import EmrClient
from relay_emr_adapter.errors import Refused, Transient
from relay_emr_adapter.fhir_mapping import Filing, build_bundle
from relay_emr_adapter.image_checks import check_image
from relay_emr_adapter.state import Journal, State
from relay_emr_adapter.validation import validate_bundle
from relay_emr_adapter.wrapping import dicom, pdf

log = logging.getLogger("relay_emr_adapter")
PORTAL_DEVICE = "invitation"  # owner type of a patient portal page's device (docs/portal.md)
SETTLED = frozenset({"already_acknowledged", "already_rejected"})
GONE = frozenset({404, 410})


@dataclass(frozen=True)
class OpenedImage:
    """An envelope opened and verified, in memory only."""

    envelope_id: str
    sender_device_id: str
    manifest: Manifest
    content: bytes
    patient_submitted: bool


class Pipeline:
    def __init__(self, client: IntegrationClient, emr: EmrClient, journal: Journal, config: Config) -> None:
        self._client = client
        self._emr = emr
        self._journal = journal
        self._config = config

    async def process(self, blob_id: str) -> State | None:
        """File or reject one blob; returns its state (None: it stays pending, to be retried)."""
        entry = self._journal.get(blob_id)
        if entry is not None and entry.state is State.FILED:
            return await self._settle(blob_id, State.FILED, None)
        if entry is not None and entry.state is State.REJECTED:
            return await self._settle(blob_id, State.REJECTED, entry.reason)
        self._journal.attempt(blob_id)
        try:
            image = await self._open(blob_id)
            resource = await self._file(image)
        except Refused as refused:
            self._journal.rejected(blob_id, refused.reason, refused.detail)
            log.warning("blob %s rejected: %s (%s)", blob_id, refused.reason, refused.detail)
            return await self._settle(blob_id, State.REJECTED, refused.reason)
        except Transient as transient:
            self._journal.failed(blob_id, transient.detail)
            log.warning("blob %s not filed yet: %s", blob_id, transient.detail)
            return None
        self._journal.filed(blob_id, resource)
        log.info("blob %s filed as %s", blob_id, resource or "a resource the EMR did not name")
        return await self._settle(blob_id, State.FILED, None)

    async def _settle(self, blob_id: str, state: State, reason: str | None) -> State | None:
        """Acknowledge (filed) or reject on the relay; the journal notes it once the relay answered."""
        try:
            if state is State.FILED:
                await self._client.blobs.ack(blob_id)
            else:
                await self._client.blobs.reject(blob_id, reason or "other")
        except RelayApiError as error:
            if error.code not in SETTLED and error.status not in GONE:
                self._journal.failed(blob_id, f"relay_{error.code}")
                return None
        except TRANSIENT_ERRORS:
            self._journal.failed(blob_id, "relay_unreachable")
            return None
        self._journal.settled(blob_id)
        return state

    async def _open(self, blob_id: str) -> OpenedImage:
        with temporary_path(self._config.state_dir) as sealed:
            try:
                await self._client.blobs.download(blob_id, sealed)
            except RelayApiError as error:
                raise Transient(f"relay_{error.code}") from None
            except TRANSIENT_ERRORS:
                raise Transient("relay_unreachable") from None
            pieces = read_file(sealed)
            try:
                return await self._open_pieces(pieces)
            except EnvelopeError as error:
                raise Refused("envelope_invalid", error.code) from None
            finally:
                with contextlib.suppress(Exception):
                    await pieces.aclose()  # type: ignore[attr-defined]

    async def _open_pieces(self, pieces: Any) -> OpenedImage:
        envelope = await read_envelope(pieces)
        if envelope.head.header.plaintext_length > self._config.max_image_bytes:
            raise Refused("unsupported_content", "too_large")
        sender = await self._sender(envelope.sender_device_id)
        keys = self._client.devices.keyring()
        opened = await envelope.unlock(keys.opening_keys(), sender[0])
        content = bytearray()
        async for piece in opened.content():
            content += piece
        if opened.key_id in keys.one_time_keys:
            self._client.devices.forget_one_time_key(opened.key_id)
        return OpenedImage(opened.envelope_id, opened.sender_device_id, opened.manifest, bytes(content), sender[1])

    async def _sender(self, device_id: str) -> tuple[Any, bool]:
        """The sender's identity key from the key directory, and whether a patient sent it."""
        try:
            device = await self._client.directory.device(device_id)
            key = await self._client.directory.sender_key(device_id)
        except UntrustedDevice:
            raise Refused("sender_unverified", "untrusted_device") from None
        except RelayApiError as error:
            if error.status in GONE:
                raise Refused("sender_unverified", "unknown_device") from None
            raise Transient(f"relay_{error.code}") from None
        return key, device.owner_type == PORTAL_DEVICE

    async def _file(self, image: OpenedImage) -> str | None:
        clinical = image.manifest.clinical
        if clinical is None or clinical.patient_ref is None:
            raise Refused("patient_not_found", "no_patient_ref")
        if clinical.consent_ref is None:
            raise Refused("consent_missing", "no_consent_ref")
        width, height = check_image(image.manifest.content_type, image.content)
        patient_id = await self._emr.find_patient(clinical.patient_ref)
        await check_consent(image.manifest, image.patient_submitted, patient_id, self._emr, self._config.consent_check)
        filing = Filing(self._config.identifier_system, image.envelope_id, image.sender_device_id,
                        image.manifest.content_type, image.content, clinical, patient_id, width, height,
                        image.patient_submitted)
        profile = self._config.profile
        wrapped = pdf(filing) if profile is Profile.PDF else dicom(filing) if profile is Profile.DICOM else None
        bundle = build_bundle(filing, profile, wrapped)
        validate_bundle(bundle)
        answer = await self._emr.transaction(bundle)
        entries = answer.get("entry") or []
        location = (entries[-1].get("response") or {}).get("location") if entries else None
        return location.split("/_history")[0] if isinstance(location, str) else None

"""The EMR upload adapter against a real relay (both backends) and a stand-in EMR that validates
every FHIR resource it receives: photos are filed for the right patient with the bytes that
were sealed, acknowledged only after the EMR accepted them, never twice, and refused with a
reason the sender sees when they cannot be filed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pydicom
import pytest
from PIL import Image
from relay_client.envelope import ClinicalMetadata, Manifest, Recipient, seal_bytes
from relay_client.invitations import PageNote
from relay_emr_adapter.adapter import Adapter
from relay_emr_adapter.config import load_config
from relay_emr_adapter.errors import ConfigError
from relay_emr_adapter.main import main
from relay_emr_adapter.state import State
from relay_emr_adapter.status import serve_status

from relay.auth.principal import Role
from relay.clock import SystemClock
from tests.conftest import SettingsFactory
from tests.support.clock import ManualClock
from tests.support.emr_adapter import (
    MRN_SYSTEM,
    AdapterSetup,
    jpeg,
    photo_manifest,
    send_photo,
    set_up_adapter,
)
from tests.support.envelopes import Member, audit_trail, keyring_of, member, upload
from tests.support.fhir_emr import StandInEmr, stand_in_emr
from tests.support.harness import Relay, free_port, running_relay
from tests.support.portal import Link, LinkParts, PatientPage, commitment_of

FULL_CONFIG = """
[relay]
url = "https://relay.example.org"
client_id = "integration"
private_key = "relay.pem"
[emr]
fhir_base_url = "https://emr.example.org/fhir"
token_url = "https://emr.example.org/token"
client_id = "adapter"
private_key = "emr.pem"
"""


@pytest.fixture
async def emr(clock: ManualClock) -> AsyncIterator[StandInEmr]:
    async with stand_in_emr(clock.now) as running:
        yield running


@pytest.fixture
async def alice(relay: Relay) -> Member:
    return await member(relay, "alice")


async def setup(relay: Relay, emr: StandInEmr, tmp_path: Path, **options: Any) -> AdapterSetup:
    admin = await relay.account("admin", Role.ADMIN)
    return await set_up_adapter(relay, emr, admin, tmp_path / "adapter", **options)


async def sender_status(relay: Relay, sender: Member, blob_id: str) -> dict[str, Any]:
    response = await relay.call("GET", f"/api/v1/blobs/{blob_id}/status", token=sender.token)
    return dict(await response.json())


async def test_a_pushed_photo_is_filed_as_media_for_the_right_patient_then_acknowledged(
        relay: Relay, emr: StandInEmr, alice: Member, tmp_path: Path) -> None:
    patient = emr.add_patient(MRN_SYSTEM, "12345")
    emr.add_patient(MRN_SYSTEM, "99999")
    consent = emr.add_consent(patient)
    configured = await setup(relay, emr, tmp_path)
    photo = jpeg()
    async with configured.adapter() as adapter:
        running = asyncio.create_task(adapter.run())
        try:
            for _ in range(100):
                if adapter.connected:
                    break
                await asyncio.sleep(0.05)
            blob_id = await send_photo(relay, alice, adapter, photo, photo_manifest(
                consent_ref=consent, captured_by=alice.account.user_id, encounter_ref="consult-3"))
            for _ in range(200):
                if (await sender_status(relay, alice, blob_id))["state"] == "purged":
                    break
                await asyncio.sleep(0.05)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        device_id = adapter.client.devices.device_id  # type: ignore[union-attr]

    status = await sender_status(relay, alice, blob_id)
    assert (status["state"], status["purge_reason"]) == ("purged", "delivered")
    assert status["recipients"][0]["acknowledged_at"] is not None
    [media] = emr.resources("Media")
    [binary] = emr.resources("Binary")
    assert media["subject"] == {"reference": patient}
    assert media["content"]["url"] == f"Binary/{binary['id']}" and media["content"]["contentType"] == "image/jpeg"
    filed = emr.binary_data(media["content"]["url"])
    assert filed == photo
    assert b"Exif" not in filed and not Image.open(io.BytesIO(filed)).getexif()
    assert media["bodySite"] == {"text": "forearm (left)"}
    assert media["createdDateTime"] == "2026-11-02T08:55:00Z"
    assert media["operator"] == {"identifier": {"system": "urn:relay:user", "value": alice.account.user_id}}
    assert media["device"]["identifier"] == {"system": "urn:relay:device", "value": alice.device.id}
    assert (media["width"], media["height"]) == (64, 48)
    assert consent in media["note"][0]["text"]
    assert "encounter" not in media
    assert media["identifier"][0]["value"].startswith(alice.device.id + ".")
    assert any(action == "blob.acknowledged" for action, _ in await audit_trail(relay, blob_id))
    summary = configured.adapter().status()
    assert (summary.filed, summary.pending, summary.rejected) == (1, 0, 0)
    assert (configured.config().device_key_file.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in configured.config().state_dir.iterdir() if p.name.startswith(".relay-")] == []
    assert device_id


@pytest.mark.parametrize("profile", ["document_reference", "pdf", "dicom"])
async def test_other_profiles_file_a_document_reference(
        relay: Relay, emr: StandInEmr, alice: Member, tmp_path: Path, profile: str) -> None:
    patient = emr.add_patient(MRN_SYSTEM, "12345")
    consent = emr.add_consent(patient)
    configured = await setup(relay, emr, tmp_path, profile=profile)
    photo = jpeg()
    async with configured.adapter() as adapter:
        blob_id = await send_photo(relay, alice, adapter, photo, photo_manifest(consent_ref=consent))
        assert await adapter.drain() == {blob_id: State.FILED}

    [document] = emr.resources("DocumentReference")
    assert emr.resources("Media") == []
    assert (document["status"], document["docStatus"]) == ("current", "final")
    assert document["subject"] == {"reference": patient}
    assert document["type"]["coding"][0]["code"] == "72170-4"
    attachment = document["content"][0]["attachment"]
    filed = emr.binary_data(attachment["url"])
    if profile == "document_reference":
        assert attachment["contentType"] == "image/jpeg" and filed == photo
    elif profile == "pdf":
        assert attachment["contentType"] == "application/pdf" and filed.startswith(b"%PDF")
        assert photo in filed, "the JPEG is embedded unchanged"
    else:
        instance = pydicom.dcmread(io.BytesIO(filed))
        assert attachment["contentType"] == "application/dicom"
        assert (instance.Modality, instance.SOPClassUID) == ("XC", "1.2.840.10008.5.1.4.1.1.77.1.4")
        assert (instance.Rows, instance.Columns, instance.PatientID) == (48, 64, patient.split("/")[1])
        assert photo in filed, "the JPEG is encapsulated unchanged"
    assert base64.b64decode(attachment["hash"]) and attachment["size"] == len(filed)
    assert (await sender_status(relay, alice, blob_id))["state"] == "purged"


async def test_an_emr_that_is_down_or_hangs_gets_the_photo_exactly_once_after_it_recovers(
        relay: Relay, emr: StandInEmr, alice: Member, tmp_path: Path) -> None:
    patient = emr.add_patient(MRN_SYSTEM, "12345")
    consent = emr.add_consent(patient)
    configured = await setup(relay, emr, tmp_path, request_timeout=0.3)
    sleeps: list[float] = []
    async with configured.adapter(sleeps) as adapter:
        blob_id = await send_photo(relay, alice, adapter, jpeg(), photo_manifest(consent_ref=consent))
        emr.mode = "hang"
        assert await adapter.drain() == {blob_id: None}
        assert adapter.status().last_error["blob_id"] == blob_id  # type: ignore[index]
        assert adapter.status().last_error["code"] == "emr_token_unreachable"  # type: ignore[index]
        emr.mode = "down"
        assert await adapter.drain() == {blob_id: None}
        assert adapter.status().last_error["code"] == "emr_token_http_503"  # type: ignore[index]
        assert (adapter.status().pending, adapter.status().filed) == (1, 0)
        assert emr.resources("Media") == [] and (await sender_status(relay, alice, blob_id))["state"] == "complete"
        assert len(sleeps) == 4 and all(0 <= wait <= 4 for wait in sleeps)

        emr.mode = "up"
        assert await adapter.drain() == {blob_id: State.FILED}
        assert await adapter.drain() == {}
    assert len(emr.resources("Media")) == 1 and len(emr.resources("Binary")) == 1
    assert emr.transactions == [2]
    assert (await sender_status(relay, alice, blob_id))["recipients"][0]["acknowledged_at"] is not None


async def test_backoff_grows_exponentially_with_jitter(relay: Relay, emr: StandInEmr, tmp_path: Path) -> None:
    configured = await setup(relay, emr, tmp_path)
    adapter = configured.adapter()
    try:
        backoff = adapter._backoff
        backoff.random = lambda: 1.0
        assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
        backoff.random = lambda: 0.25
        assert backoff.delay(3) == 0.5 and backoff.delay(1, retry_after=30) == 4
    finally:
        await adapter.close()


async def test_an_adapter_restarted_after_the_emr_accepted_files_once_and_acknowledges(
        relay: Relay, emr: StandInEmr, alice: Member, tmp_path: Path) -> None:
    patient = emr.add_patient(MRN_SYSTEM, "12345")
    consent = emr.add_consent(patient)
    configured = await setup(relay, emr, tmp_path, request_timeout=30)
    first = configured.adapter()
    device_id = await first.start()
    blob_id = await send_photo(relay, alice, first, jpeg(), photo_manifest(consent_ref=consent))
    emr.hang_after_commit = True
    crashed = asyncio.create_task(first.drain())
    await asyncio.wait_for(emr.committed.wait(), 10)
    crashed.cancel()
    await asyncio.gather(crashed, return_exceptions=True)
    await first.close()
    emr.hang_after_commit = False
    assert (await sender_status(relay, alice, blob_id))["state"] == "complete", "not acknowledged before filing ended"

    async with configured.adapter() as second:
        assert second.client.devices.device_id == device_id  # type: ignore[union-attr]
        assert await second.drain() == {blob_id: State.FILED}
    assert len(emr.resources("Media")) == 1 and len(emr.resources("Binary")) == 1
    assert emr.transactions == [2, 2], "filed again, matched by the conditional create"
    actions = [action for action, _ in await audit_trail(relay, blob_id)]
    assert actions.count("blob.acknowledged") == 1 and actions[-1] == "blob.purged"


async def test_permanent_refusals_reach_the_sender_with_their_reason(
        relay: Relay, emr: StandInEmr, alice: Member, tmp_path: Path) -> None:
    patient = emr.add_patient(MRN_SYSTEM, "12345")
    consent = emr.add_consent(patient)
    research_only = emr.add_consent(patient, scope="research")
    configured = await setup(relay, emr, tmp_path)
    async with configured.adapter() as adapter:
        cases = {
            "patient_not_found": photo_manifest(patient_ref="55555", consent_ref=consent),
            "validation_failed": photo_manifest(consent_ref=consent, encounter_ref="Encounter/404"),
            "consent_missing": photo_manifest(),
            "research_consent": photo_manifest(consent_ref=research_only),
        }
        blobs = {reason: await send_photo(relay, alice, adapter, jpeg(), manifest) for reason, manifest in cases.items()}
        exif = Image.Exif()
        exif[0x8825] = {1: "N"}
        with_gps = await send_photo(relay, alice, adapter, jpeg(exif=exif), photo_manifest(consent_ref=consent))
        outcomes = await adapter.drain()
        assert set(outcomes.values()) == {State.REJECTED}
        summary = adapter.status()
        assert (summary.rejected, summary.filed, summary.pending) == (5, 0, 0)

    expected = {blobs["patient_not_found"]: "patient_not_found", blobs["validation_failed"]: "validation_failed",
                blobs["consent_missing"]: "consent_missing", blobs["research_consent"]: "consent_missing",
                with_gps: "unsupported_content"}
    for blob_id, reason in expected.items():
        status = await sender_status(relay, alice, blob_id)
        assert status["recipients"][0]["reject_reason"] == reason, blob_id
        assert ("blob.rejected", {"device_id": status["recipients"][0]["device_id"], "reason": reason}) in (
            await audit_trail(relay, blob_id))
    assert emr.resources("Media") == [] and emr.resources("Binary") == []


async def test_a_tampered_envelope_or_an_unknown_sender_is_refused_audited_and_not_filed(
        relay: Relay, emr: StandInEmr, alice: Member, tmp_path: Path) -> None:
    patient = emr.add_patient(MRN_SYSTEM, "12345")
    consent = emr.add_consent(patient)
    configured = await setup(relay, emr, tmp_path)
    bob = await member(relay, "bob")
    async with configured.adapter() as adapter:
        tampered = await _upload_tampered(relay, alice, adapter, photo_manifest(consent_ref=consent))
        from_bob = await send_photo(relay, bob, adapter, jpeg(), photo_manifest(consent_ref=consent))
        revoked = await relay.call("DELETE", f"/api/v1/devices/{bob.device.id}", token=bob.account.token)
        assert revoked.status == 204
        outcomes = await adapter.drain()
    assert outcomes == {tampered: State.REJECTED, from_bob: State.REJECTED}
    for blob_id, reason in ((tampered, "envelope_invalid"), (from_bob, "sender_unverified")):
        assert reason in [details.get("reason") for action, details in await audit_trail(relay, blob_id)
                          if action == "blob.rejected"]
    assert (await sender_status(relay, alice, tampered))["recipients"][0]["reject_reason"] == "envelope_invalid"
    assert emr.resources("Media") == [] and emr.resources("Binary") == [] and emr.transactions == []


async def _upload_tampered(relay: Relay, sender: Member, adapter: Adapter, manifest: Manifest) -> str:
    """A photo sealed to the adapter, one byte of its last chunk flipped before the upload."""
    assert adapter.client is not None
    keys = adapter.client.devices.keyring()
    recipient = Recipient(keys.device_id, keys.encryption_key_id, keys.encryption_key.public_key())
    envelope = bytearray(await seal_bytes(manifest, jpeg(), sender=keyring_of(sender.device).sender,
                                          recipients=[recipient]))
    envelope[-100] ^= 0x01
    return await upload(relay, sender.token, bytes(envelope))


async def test_status_command_and_health_endpoint_report_ids_and_codes_only(
        relay: Relay, emr: StandInEmr, alice: Member, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    patient = emr.add_patient(MRN_SYSTEM, "12345")
    configured = await setup(relay, emr, tmp_path)
    async with configured.adapter() as adapter:
        await send_photo(relay, alice, adapter, jpeg(), photo_manifest(patient_ref="55555", consent_ref="Consent/1"))
        await adapter.drain()
        waiting = await send_photo(relay, alice, adapter, jpeg(), photo_manifest(consent_ref=emr.add_consent(patient)))
        emr.mode = "down"
        await adapter.drain()
        emr.mode = "up"
        runner = await serve_status(adapter, port := free_port())
        try:
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/health") as answer:
                health = await answer.json()
                assert answer.headers["Cache-Control"] == "no-store"
        finally:
            await runner.cleanup()
    assert (health["pending"], health["rejected"], health["filed"]) == (1, 1, 0)
    assert health["last_error"]["blob_id"] == waiting and health["last_error"]["code"] == "emr_http_503"
    capsys.readouterr()
    assert main(["status", "--config", str(configured.config_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["pending"], printed["rejected"]) == (1, 1) and printed["last_error"] == health["last_error"]
    assert "12345" not in json.dumps(printed) and "forearm" not in json.dumps(printed)


@pytest.mark.parametrize(("toml", "named"), [
    ("[relay]\nurl = 'ftp://x'\n", "relay.url"),
    ("[relay]\nurl = 'https://relay'\nclient_id = 'c'\nprivate_key = 'k'\n", "emr.fhir_base_url"),
    (FULL_CONFIG + "[adapter]\nstate_dir = 's'\nprofile = 'tiff'\n", "adapter.profile"),
    (FULL_CONFIG + "[adapter]\nstate_dir = 's'\nretries = 3\n", "adapter.retries"),
    (FULL_CONFIG + "[adapter]\nstate_dir = 's'\n[retry]\nattempts = 0\n", "retry.attempts"),
])
def test_a_bad_configuration_names_the_key(tmp_path: Path, toml: str, named: str) -> None:
    path = tmp_path / "adapter.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(path)
    assert main(["status", "--config", str(path)]) == 2


def test_the_example_configuration_is_valid() -> None:
    config = load_config(Path(__file__).resolve().parent.parent / "clients" / "python" / "emr-adapter.example.toml")
    assert (config.profile.value, config.consent_check.value, config.retry.attempts) == ("media", "emr", 5)


async def test_a_patients_photo_from_the_portal_is_filed_as_a_preliminary_submission(
        relay: Relay, emr: StandInEmr, alice: Member, tmp_path: Path) -> None:
    patient = emr.add_patient(MRN_SYSTEM, "12345")
    configured = await setup(relay, emr, tmp_path, profile="document_reference")
    photo = jpeg()
    async with configured.adapter() as adapter:
        assert adapter.client is not None
        device_id = adapter.client.devices.device_id
        listed = await relay.call("GET", f"/api/v1/directory/devices/{device_id}", token=alice.token)
        parts = LinkParts(secrets.token_urlsafe(32), commitment_of([(device_id, (await listed.json())["identity_key"])]),
                          PageNote("Please photograph the wound.", ClinicalMetadata(patient_ref="12345",
                                                                                     body_site="left knee")))
        created = await relay.call("POST", "/api/v1/invitations", token=alice.token, json={
            "channel": "email", "contact": "pat@example.org", "recipient_device_ids": [device_id],
            "verification": {"method": "date_of_birth", "date_of_birth": "1970-01-01"}, **parts.body()})
        assert created.status == 201, await created.text()
        page = PatientPage(relay, Link((await created.json())["id"], parts.secret, parts.commitment))
        await page.ready(date_of_birth="1970-01-01")
        location, answer = await page.upload(await page.seal(photo))
        assert answer.status == 204, await answer.text()
        assert await adapter.drain() == {location.rsplit("/", 1)[1]: State.FILED}

    [document] = emr.resources("DocumentReference")
    assert (document["status"], document["docStatus"]) == ("current", "preliminary")
    assert document["subject"] == {"reference": patient} and document["author"] == [{"reference": patient}]
    assert emr.binary_data(document["content"][0]["attachment"]["url"]) == photo


async def test_the_console_command_registers_files_and_stops_cleanly_on_sigterm(
        make_settings: SettingsFactory, tmp_path: Path) -> None:
    """As an operator runs it: a process of its own, on the real clock (client assertions carry it)."""
    async with running_relay(make_settings(), SystemClock()) as relay, stand_in_emr(SystemClock().now) as emr:
        await console_command_files_and_stops(relay, emr, await member(relay, "alice"), tmp_path)


async def console_command_files_and_stops(relay: Relay, emr: StandInEmr, alice: Member, tmp_path: Path) -> None:
    patient = emr.add_patient(MRN_SYSTEM, "12345")
    consent = emr.add_consent(patient)
    configured = await setup(relay, emr, tmp_path)
    port = free_port()
    configured.config_path.write_text(configured.config_path.read_text().replace(
        "poll_interval = 60", f"poll_interval = 60\nstatus_port = {port}"))
    command = [str(Path(sys.executable).with_name("relay-emr-adapter"))]
    config = ["--config", str(configured.config_path)]

    init = await asyncio.create_subprocess_exec(*command, "init", *config, stdout=asyncio.subprocess.PIPE)
    printed, _ = await init.communicate()
    assert init.returncode == 0
    registered = json.loads(printed)
    async with configured.adapter() as adapter:
        assert adapter.client is not None and adapter.client.devices.device_id == registered["device_id"]
        blob_id = await send_photo(relay, alice, adapter, jpeg(), photo_manifest(consent_ref=consent))

    running = await asyncio.create_subprocess_exec(*command, "run", *config, stderr=asyncio.subprocess.PIPE)
    try:
        health: dict[str, Any] = {}
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/health") as answer:
                        health = await answer.json()
                if health.get("filed") == 1:
                    break
                await asyncio.sleep(0.1)
        assert health.get("filed") == 1, health
        running.send_signal(signal.SIGTERM)
        _, logged = await asyncio.wait_for(running.communicate(), 30)
    finally:
        if running.returncode is None:
            running.kill()
            await running.wait()
    assert running.returncode == 0
    assert b"12345" not in logged and b"forearm" not in logged, "logs carry ids only"
    assert [media["subject"] for media in emr.resources("Media")] == [{"reference": patient}]
    assert (await sender_status(relay, alice, blob_id))["state"] == "purged"

"""The Python SDK's side of portal invitations: create reads and verifies the recipients in the
directory, commits to their keys and seals the note under the link's secret; a photo the
patient's page sent opens with the SDK like any other, its sender being the portal device."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from relay_client import Credentials, RelayClient
from relay_client.envelope import ClinicalMetadata
from relay_client.invitations import PageNote

from relay.auth.principal import Role
from tests.conftest import SettingsFactory
from tests.support.clock import ManualClock
from tests.support.devices import b64url
from tests.support.harness import PASSWORD, Relay, running_relay
from tests.support.portal import MailServer, PatientPage, commitment_of, link_in


@pytest.fixture
async def mail() -> AsyncIterator[MailServer]:
    server = MailServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def relay(make_settings: SettingsFactory, clock: ManualClock, mail: MailServer) -> AsyncIterator[Relay]:
    async with running_relay(make_settings(smtp_host="127.0.0.1", smtp_port=mail.port), clock) as running:
        yield running


async def test_the_sdk_invites_and_opens_what_the_patient_sent(relay: Relay, mail: MailServer, tmp_path: Path
                                                               ) -> None:
    account = await relay.account("alice", Role.CLINICIAN, login=False)
    async with RelayClient(relay.url, key_file=tmp_path / "alice.json") as client:
        await client.login(Credentials(account.tenant, "alice", PASSWORD))
        secrets = await client.use_device("alice's phone")
        sent = await client.invitations.create(
            channel="email", contact="pat@example.org", recipients=[secrets.device_id],
            verification={"method": "date_of_birth", "date_of_birth": "1975-01-02"}, max_uploads=1,
            note=PageNote("Two photos, please.", ClinicalMetadata(patient_ref="Patient/8")))
        link = link_in((await mail.next()).body)
        assert sent.link.endswith(f"/p/{sent.id}#{link.secret}.{link.commitment}")
        device = await client.directory.device(secrets.device_id)
        assert link.commitment == commitment_of([(device.id, b64url(device.identity_key))])
        page = PatientPage(relay, link)
        await page.ready(date_of_birth="1975-01-02")
        assert page.note == PageNote("Two photos, please.", ClinicalMetadata(patient_ref="Patient/8"))
        location, answer = await page.upload(await page.seal(b"a photo" * 100))
        assert answer.status == 204
        photo = await client.open_blob(location.rsplit("/", 1)[1], tmp_path / "photo.jpg")
        assert (tmp_path / "photo.jpg").read_bytes() == b"a photo" * 100
        assert photo.manifest.source == "patient_portal" and photo.manifest.consent == page.consent
        assert photo.manifest.clinical is not None and photo.manifest.clinical.patient_ref == "Patient/8"
        assert photo.sender_device_id == page.device.id
        assert (await client.invitations.get(sent.id))["status"] == "used_up"
        assert [each["id"] for each in await client.invitations.list()] == [sent.id]


async def test_the_sdk_resends_and_revokes(relay: Relay, mail: MailServer, tmp_path: Path) -> None:
    account = await relay.account("alice", Role.CLINICIAN, login=False)
    async with RelayClient(relay.url, key_file=tmp_path / "alice.json") as client:
        await client.login(Credentials(account.tenant, "alice", PASSWORD))
        secrets = await client.use_device("alice's phone")
        sent = await client.invitations.create(channel="email", contact="pat@example.org",
                                               recipients=[secrets.device_id])
        first = link_in((await mail.next()).body)
        again = await client.invitations.resend(sent.id)
        second = link_in((await mail.next()).body)
        assert again.link.endswith(f"#{second.secret}.{second.commitment}") and second.secret != first.secret
        assert (await PatientPage(relay, first).open()).status == 404
        assert (await client.invitations.revoke(sent.id))["status"] == "revoked"
        assert (await PatientPage(relay, second).open()).status == 410

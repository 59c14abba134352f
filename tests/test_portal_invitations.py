"""Patient portal invitations end to end through the HTTP API (the page's side played by
tests/support/portal.py): e-mail and SMS carry only the sentence and the link, verification
locks after five failures, consent travels sealed, uploads count and use the link up, expiry
and revocation delete the contact data, and nothing of the contact is ever shown back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
from relay_client.envelope import ClinicalMetadata, open_bytes
from relay_client.invitations import PageNote
from sqlalchemy import select

from relay.auth.principal import Role
from relay.storage.tables import audit_events, invitations
from tests.conftest import SettingsFactory
from tests.support.clock import ManualClock
from tests.support.envelopes import Member, adapter, download, keyring_of, member, patch, recipient_of
from tests.support.harness import Relay, free_port, running_relay
from tests.support.portal import MailServer, PatientPage, TwilioStandIn, invite, link_in, link_parts

CONTACT = "pat.example@example.org"
PHOTO = b"\xff\xd8\xff\xe0 a patient's photo " * 200


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


@contextlib.asynccontextmanager
async def updates(relay: Relay, token: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    client = socketio.AsyncClient(reconnection=False)
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client.on("invitation.updated", events.put)
    await client.connect(relay.url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    try:
        yield events
    finally:
        await client.disconnect()


async def until_status(events: asyncio.Queue[dict[str, Any]], status: str) -> dict[str, Any]:
    while True:
        event = await asyncio.wait_for(events.get(), 10)
        if event["status"] == status:
            return event


async def stored(relay: Relay, invitation_id: str) -> Any:
    async with relay.runtime.database.read() as connection:
        return (await connection.execute(select(invitations).where(invitations.c.id == invitation_id))).one()


async def actions(relay: Relay, invitation_id: str) -> list[str]:
    async with relay.runtime.database.read() as connection:
        rows = await connection.execute(select(audit_events.c.action).where(
            audit_events.c.object_id == invitation_id).order_by(audit_events.c.seq))
        return list(rows.scalars())


async def view(relay: Relay, clinician: Member, invitation_id: str) -> dict[str, Any]:
    response = await relay.call("GET", f"/api/v1/invitations/{invitation_id}", token=clinician.token)
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def invited_page(relay: Relay, mail: MailServer, clinician: Member, recipients: list[Any], **extra: Any
                       ) -> tuple[dict[str, Any], PatientPage]:
    created = await invite(relay, clinician.token, recipients, contact=CONTACT, **extra)
    return created, PatientPage(relay, link_in((await mail.next()).body))


async def code_from(mail: MailServer) -> str:
    found = re.search(r"\b(\d{6})\b", (await mail.next()).body)
    assert found is not None
    return found[1]


async def test_an_emailed_link_leads_to_a_sealed_photo_with_the_consent(relay: Relay, mail: MailServer) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    alice = await member(relay, "alice")
    emr = await adapter(relay, admin)
    note = PageNote("Please photograph the wound from two sides.",
                    ClinicalMetadata(patient_ref="Patient/mrn-4711", body_site="left knee"))
    created = await invite(relay, alice.token, [alice.device, emr.device], contact=CONTACT, note=note)
    assert created["status"] == "sent" and created["uploads_used"] == 0
    assert CONTACT not in json.dumps(created)

    sent = await mail.next()
    link = link_in(sent.body)
    assert sent.to == (CONTACT,)
    assert sent.body.strip() == (f"General invites you to share photos securely with your care team: "
                                 f"{relay.runtime.settings.effective_public_url}/p/{link.invitation_id}#{link.secret}"
                                 f".{link.commitment}")
    assert "General" in sent.subject and CONTACT not in sent.body

    page = PatientPage(relay, link)
    opened = await page.open()
    assert opened.status == 201
    session = await opened.json()
    assert session["verification_method"] == "code" and session["uploads_left"] == 5
    assert "sealed_note" not in session, "the note may name the patient: it waits for verification"
    assert (await relay.call("GET", "/api/v1/portal/recipients", token=page.token)).status == 403
    assert (await page.ask_code()).status == 204
    response = await page.verify(code=await code_from(mail))
    assert response.status == 204, await response.text()
    assert {recipient.device_id for recipient in await page.fetch_recipients()} == {alice.device.id, emr.device.id}
    assert page.note == note
    assert (await page.agree()).status == 204
    assert (await page.register_device()).status == 201
    location, answer = await page.upload(await page.seal(PHOTO))
    assert answer.status == 204, await answer.text()
    blob_id = location.rsplit("/", 1)[1]

    shown = await view(relay, alice, link.invitation_id)
    assert page.consent is not None
    assert (shown["uploads_used"], shown["consent_id"], shown["consent_sha256"]) == (
        1, page.consent.id, page.consent.sha256())
    directory = await relay.call("GET", f"/api/v1/directory/devices/{page.device.id}", token=alice.token)
    sender = await directory.json()
    assert sender["owner_type"] == "invitation" and sender["owner_id"] == link.invitation_id
    for reader in (alice, emr):
        received = await download(relay, reader.token, blob_id)
        assert received.status == 200
        opened_photo = await open_bytes(await received.read(), keyring_of(reader.device).opening_keys(),
                                        keyring_of(page.device).identity_key)
        assert opened_photo.content == PHOTO
        assert opened_photo.manifest.source == "patient_portal"
        assert opened_photo.manifest.consent == page.consent
        assert opened_photo.manifest.clinical == ClinicalMetadata(patient_ref="Patient/mrn-4711", body_site="left knee",
                                                                  consent_ref=page.consent.id)
    trail = await actions(relay, link.invitation_id)
    for action in ("portal.invitation_created", "portal.invitation_sent", "portal.invitation_code_sent",
                   "portal.invitation_verified", "portal.invitation_consent_recorded",
                   "portal.invitation_upload_completed"):
        assert action in trail


async def test_date_of_birth_locks_after_five_failures_and_the_clinician_is_told(relay: Relay, mail: MailServer) -> None:
    alice = await member(relay, "alice")
    created, page = await invited_page(relay, mail, alice, [alice.device],
                                       verification={"method": "date_of_birth", "date_of_birth": "1980-04-12"})
    assert created["verification_method"] == "date_of_birth"
    assert (await page.open()).status == 201
    assert (await page.ask_code()).status == 422
    async with updates(relay, alice.token) as events:
        for left in (4, 3, 2, 1, 0):
            response = await page.verify(date_of_birth="1980-04-13")
            assert response.status == 422
            body = await response.json()
            assert body["error"]["code"] == "verification_failed" and body["error"]["details"] == {"attempts_left": left}
        right = await page.verify(date_of_birth="1980-04-12")
        assert (right.status, (await right.json())["error"]["code"]) == (423, "invitation_locked")
        locked = await until_status(events, "locked")
    assert locked["id"] == created["id"] and locked["failed_attempts"] == 5
    assert (await page.open()).status == 423
    assert "portal.invitation_locked" in await actions(relay, created["id"])
    assert (await view(relay, alice, created["id"]))["status"] == "locked"


async def test_the_sixth_code_is_refused_even_when_right(relay: Relay, mail: MailServer) -> None:
    alice = await member(relay, "alice")
    _, page = await invited_page(relay, mail, alice, [alice.device])
    assert (await page.open()).status == 201
    assert (await page.ask_code()).status == 204
    code = await code_from(mail)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert (await page.verify(code=wrong)).status == 422
    response = await page.verify(code=code)
    assert response.status == 423


async def test_an_expired_invitation_is_gone_with_its_contact_data(relay: Relay, mail: MailServer) -> None:
    alice = await member(relay, "alice")
    created, page = await invited_page(relay, mail, alice, [alice.device], expires_in=300,
                                       verification={"method": "date_of_birth", "date_of_birth": "1980-04-12"})
    assert (await page.open()).status == 201
    row = await stored(relay, created["id"])
    assert row.contact is not None and row.date_of_birth is not None and CONTACT.encode() not in row.contact
    relay.clock.advance(301)
    response = await page.open()
    assert (response.status, (await response.json())["error"]["code"]) == (410, "invitation_expired")
    assert (await page.verify(date_of_birth="1980-04-12")).status == 410
    row = await stored(relay, created["id"])
    assert (row.status, row.contact, row.date_of_birth) == ("expired", None, None)
    assert "portal.invitation_expired" in await actions(relay, created["id"])


async def test_the_sweep_expires_invitations_nobody_opens(relay: Relay, mail: MailServer) -> None:
    alice = await member(relay, "alice")
    created, _ = await invited_page(relay, mail, alice, [alice.device], expires_in=300)
    relay.clock.advance(300)
    assert await relay.runtime.portal.lifecycle.sweep() == 1
    row = await stored(relay, created["id"])
    assert (row.status, row.contact) == ("expired", None)


async def test_a_used_up_link_opens_and_uploads_nothing_more(relay: Relay, mail: MailServer) -> None:
    alice = await member(relay, "alice")
    created, page = await invited_page(relay, mail, alice, [alice.device], max_uploads=1,
                                       verification={"method": "date_of_birth", "date_of_birth": "1980-04-12"})
    await page.ready(date_of_birth="1980-04-12")
    envelope = await page.seal(PHOTO)
    async with updates(relay, alice.token) as events:
        location, answer = await page.upload(envelope)
        assert answer.status == 204
        used_up = await until_status(events, "used_up")
    assert used_up["uploads_used"] == 1
    row = await stored(relay, created["id"])
    assert (row.contact, row.date_of_birth) == (None, None)
    again = await page.open()
    assert (again.status, (await again.json())["error"]["code"]) == (410, "invitation_used_up")
    assert (await page.create_upload(await page.seal(PHOTO))).status == 410
    replay = await patch(relay, page.token, location, 0, envelope)
    assert replay.status == 410
    assert "portal.invitation_used_up" in await actions(relay, created["id"])
    directory = await relay.call("GET", f"/api/v1/directory/devices/{page.device.id}", token=alice.token)
    assert directory.status == 200, "recipients can still verify what the retired portal device sent"


async def test_uploads_are_limited_and_must_name_exactly_the_recipients(relay: Relay, mail: MailServer) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    _, page = await invited_page(relay, mail, alice, [alice.device, bob.device], max_uploads=2,
                                 verification={"method": "date_of_birth", "date_of_birth": "1980-04-12"})
    await page.ready(date_of_birth="1980-04-12")
    for recipients in ([recipient_of(alice.device)], [recipient_of(alice.device), recipient_of(bob.device)][:1]):
        _, answer = await page.upload(await page.seal(PHOTO, recipients))
        assert (answer.status, (await answer.json())["error"]["code"]) == (422, "recipients_mismatch")
    carol = await member(relay, "carol")
    _, answer = await page.upload(await page.seal(PHOTO, page.recipients + [recipient_of(carol.device)]))
    assert (answer.status, (await answer.json())["error"]["code"]) == (422, "recipients_mismatch")
    first = await page.create_upload(await page.seal(PHOTO))
    second = await page.create_upload(await page.seal(PHOTO))
    assert (first.status, second.status) == (201, 201)
    third = await page.create_upload(await page.seal(PHOTO))
    assert (third.status, (await third.json())["error"]["code"]) == (409, "upload_limit_reached")


async def test_the_page_must_verify_and_consent_before_it_sends(relay: Relay, mail: MailServer) -> None:
    alice = await member(relay, "alice")
    _, page = await invited_page(relay, mail, alice, [alice.device],
                                 verification={"method": "date_of_birth", "date_of_birth": "1980-04-12"})
    assert (await page.open()).status == 201
    bundle = await relay.call("GET", "/api/v1/portal/recipients", token=page.token)
    assert (bundle.status, (await bundle.json())["error"]["code"]) == (403, "not_verified")
    assert (await page.verify(date_of_birth="1980-04-12")).status == 204
    early = await page.register_device()
    assert (early.status, (await early.json())["error"]["code"]) == (403, "consent_required")
    elsewhere = await relay.call("GET", "/api/v1/me", token=page.token)
    assert (elsewhere.status, (await elsewhere.json())["error"]["code"]) == (403, "role_forbidden")
    wrong = await relay.call("POST", "/api/v1/portal/sessions", json={
        "invitation_id": page.link.invitation_id, "secret": link_parts([alice.device]).secret})
    assert (wrong.status, (await wrong.json())["error"]["code"]) == (404, "invitation_not_found")


async def test_resend_replaces_the_link_and_revoke_ends_it(relay: Relay, mail: MailServer) -> None:
    alice = await member(relay, "alice")
    created, old = await invited_page(relay, mail, alice, [alice.device])
    assert (await old.open()).status == 201
    resent = await relay.call("POST", f"/api/v1/invitations/{created['id']}/resend", token=alice.token,
                              json=link_parts([alice.device]).body())
    assert resent.status == 200, await resent.text()
    new = PatientPage(relay, link_in((await mail.next()).body))
    assert new.link.secret != old.link.secret
    assert (await old.ask_code()).status == 401
    assert (await old.open()).status == 404
    assert (await new.open()).status == 201
    revoked = await relay.call("POST", f"/api/v1/invitations/{created['id']}/revoke", token=alice.token)
    assert (await revoked.json())["status"] == "revoked"
    response = await new.open()
    assert (response.status, (await response.json())["error"]["code"]) == (410, "invitation_revoked")
    assert (await stored(relay, created["id"])).contact is None
    trail = await actions(relay, created["id"])
    assert "portal.invitation_resent" in trail and "portal.invitation_revoked" in trail


async def test_listing_shows_nothing_of_the_contact(relay: Relay, mail: MailServer) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    admin = await relay.account("admin", Role.ADMIN)
    created, _ = await invited_page(relay, mail, alice, [alice.device], note=PageNote("secret note"),
                                    verification={"method": "date_of_birth", "date_of_birth": "1980-04-12"})
    mine = await relay.call("GET", "/api/v1/invitations", token=alice.token)
    text = await mine.text()
    assert [each["id"] for each in (await mine.json())["invitations"]] == [created["id"]]
    for secret in (CONTACT, "1980-04-12", "secret note"):
        assert secret not in text
    assert (await (await relay.call("GET", "/api/v1/invitations", token=bob.token)).json())["invitations"] == []
    assert (await relay.call("GET", f"/api/v1/invitations/{created['id']}", token=bob.token)).status == 403
    everyone = await (await relay.call("GET", "/api/v1/invitations", token=admin.token)).json()
    assert [each["id"] for each in everyone["invitations"]] == [created["id"]]


async def test_bad_invitations_are_refused_with_codes(relay: Relay, mail: MailServer) -> None:
    alice = await member(relay, "alice")
    elsewhere = await member(relay, "eve", tenant="elsewhere")
    parts = link_parts([alice.device]).body()
    base = {"channel": "email", "contact": CONTACT, "verification": {"method": "code"},
            "recipient_device_ids": [alice.device.id], **parts}
    cases = [
        ({"contact": "not an address"}, "invalid_contact"),
        ({"channel": "sms", "contact": "+447700900123"}, "channel_unavailable"),
        ({"recipient_device_ids": [elsewhere.device.id]}, "invalid_recipients"),
        ({"expires_in": 60}, "invalid_expiry"),
        ({"template": "custom"}, "unknown_template"),
        ({"verification": {"method": "date_of_birth", "date_of_birth": "1980-02-30"}}, "invalid_date_of_birth"),
        ({"max_uploads": 21}, "invalid_request"),
    ]
    for change, code in cases:
        response = await relay.call("POST", "/api/v1/invitations", token=alice.token, json=base | change)
        body = await response.text()
        assert response.status == 422 and json.loads(body)["error"]["code"] == code, (change, body)
        assert CONTACT not in body and "+447700900123" not in body


async def test_sms_carries_only_the_sentence_and_the_link(make_settings: SettingsFactory, clock: ManualClock) -> None:
    twilio = TwilioStandIn()
    await twilio.start()
    try:
        async with running_relay(make_settings(**twilio.settings()), clock) as relay:
            alice = await member(relay, "alice")
            await invite(relay, alice.token, [alice.device], channel="sms", contact="+447700900123")
            sent = await twilio.next()
            link = link_in(sent["Body"])
            assert sent["To"] == "+447700900123" and sent["From"] == twilio.from_number
            assert sent["Body"] == (f"General invites you to share photos securely with your care team: "
                                    f"{relay.runtime.settings.effective_public_url}/p/{link.invitation_id}"
                                    f"#{link.secret}.{link.commitment}")
            page = PatientPage(relay, link)
            assert (await page.open()).status == 201
            assert (await page.ask_code()).status == 204
            code_message = await twilio.next()
            assert re.fullmatch(r"Your General verification code is \d{6}\. It is valid for 10 minutes\.",
                                code_message["Body"])
            assert twilio.refused == []
    finally:
        await twilio.close()


async def test_the_development_outbox_shows_admins_what_was_sent(make_settings: SettingsFactory,
                                                                 clock: ManualClock) -> None:
    async with running_relay(make_settings(), clock) as relay:
        admin = await relay.account("admin", Role.ADMIN)
        alice = await member(relay, "alice")
        created = await invite(relay, alice.token, [alice.device], contact=CONTACT)
        outbox = await relay.call("GET", "/api/v1/dev/outbox", token=admin.token)
        assert outbox.status == 200
        messages = (await outbox.json())["messages"]
        assert messages[0]["to"] == [CONTACT] and f"/p/{created['id']}#" in messages[0]["body"]
        assert (await relay.call("GET", "/api/v1/dev/outbox", token=alice.token)).status == 403


async def test_there_is_no_outbox_with_a_real_mail_server(relay: Relay) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    response = await relay.call("GET", "/api/v1/dev/outbox", token=admin.token)
    assert (response.status, (await response.json())["error"]["code"]) == (404, "no_dev_mail")


async def test_a_link_the_mail_server_never_took_ends_the_invitation(make_settings: SettingsFactory,
                                                                     clock: ManualClock) -> None:
    async with running_relay(make_settings(smtp_host="127.0.0.1", smtp_port=free_port()), clock) as relay:
        alice = await member(relay, "alice")
        response = await relay.call("POST", "/api/v1/invitations", token=alice.token, json={
            "channel": "email", "contact": CONTACT, "verification": {"method": "code"},
            "recipient_device_ids": [alice.device.id], **link_parts([alice.device]).body()})
        assert (response.status, (await response.json())["error"]["code"]) == (503, "delivery_unavailable")
        listed = await (await relay.call("GET", "/api/v1/invitations", token=alice.token)).json()
        [withdrawn] = listed["invitations"]
        assert withdrawn["status"] == "revoked"
        assert (await stored(relay, withdrawn["id"])).contact is None
        assert (await actions(relay, withdrawn["id"]))[-1] == "portal.invitation_revoked"

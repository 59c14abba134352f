"""The patient's whole journey in Debian's Chromium (docs/portal.md): a clinician's SDK creates
an invitation, the e-mail arrives at an aiosmtpd server, the patient opens the link, asks for
and enters the code, consents, takes a photo with the (fake) camera and picks a JPEG carrying
GPS EXIF, and sends both (one PATCH is cut on the way and resumed); the clinician's device
opens both: JPEGs without EXIF, consent in the manifest. The link's fragment never reaches the
relay, nor its logs. A relay that serves swapped keys gets nothing: the page refuses to seal.
Ended invitations show their end pages."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import re
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from PIL import Image
from playwright.async_api import Browser, Page, Request, Route
from relay_client import Credentials, RelayClient
from relay_client.envelope import ClinicalMetadata
from relay_client.envelope.format import TAG_LENGTH, decode_head, split_envelope
from relay_client.envelope.schedule import chunk_nonce
from relay_client.envelope.unlock import unlock
from relay_client.invitations import PageNote, SentInvitation
from sqlalchemy import select, update

from relay.storage import tables
from tests.conftest import SettingsFactory
from tests.support.browser import launch_chromium
from tests.support.clock import ManualClock
from tests.support.harness import PASSWORD, Relay, free_port, running_relay
from tests.test_portal_page import FAKE_CAMERA, assert_no_metadata, canonical, jpeg_with_gps

LINK = re.compile(r"(http://127\.0\.0\.1:\d+/p/[A-Za-z0-9_-]+)#([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{43})")
PATIENT = "patient@example.org"


class Mailbox:
    """aiosmtpd handler: what the relay sent, as plain-text bodies, and a signal per message."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.arrived: asyncio.Queue[str] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message: Any = message_from_bytes(envelope.original_content, policy=policy.default)
        body = message.get_body(preferencelist=("plain",)).get_content()
        self.bodies.append(body)
        self.loop.call_soon_threadsafe(self.arrived.put_nowait, body)
        return "250 OK"

    async def next(self) -> str:
        return await asyncio.wait_for(self.arrived.get(), 10)


@dataclass
class Portal:
    relay: Relay
    mailbox: Mailbox
    clinician: RelayClient
    device_id: str
    browser: Browser
    requests: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def invite(self, **options: Any) -> tuple[SentInvitation, str]:
        """A new invitation to the clinician's device; the link as the patient's e-mail carries it."""
        invitation = await self.clinician.invitations.create(
            channel="email", contact=PATIENT, recipients=[self.device_id], **options)
        body = await self.mailbox.next()
        found = LINK.search(body)
        assert found, body
        assert found.group(0) == invitation.link
        return invitation, found.group(0)

    async def open(self, link: str) -> Page:
        context = await self.browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                                 has_touch=True)
        page = await context.new_page()
        page.on("request", lambda request: self.requests.append(request))
        page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        await page.goto(link)
        return page


async def step(page: Page, name: str) -> None:
    await page.wait_for_function("name => document.body.dataset.step === name", arg=name, timeout=20_000)


@pytest.fixture
async def portal(make_settings: SettingsFactory, clock: ManualClock, tmp_path: Path,
                 caplog: pytest.LogCaptureFixture) -> AsyncIterator[Portal]:
    caplog.set_level(logging.DEBUG)
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False)
    try:
        async with running_relay(settings, clock) as relay, launch_chromium(*FAKE_CAMERA) as browser:
            account = await relay.account("dr-grey")
            clinician = RelayClient(relay.url, key_file=tmp_path / "dr-grey" / "device.json")
            await clinician.login(Credentials(account.tenant, account.username, PASSWORD))
            device = await clinician.use_device("Dr Grey's phone")
            assert device.device_id is not None
            try:
                yield Portal(relay, mailbox, clinician, device.device_id, browser)
            finally:
                await clinician.close()
    finally:
        smtp.stop()


def manifest_of(envelope: bytes, client: RelayClient) -> dict[str, Any]:
    """The manifest JSON as docs/envelope.md lays it out: the first bytes of chunk 0's plaintext."""
    head_bytes, body = split_envelope(envelope)
    head = decode_head(head_bytes)
    header = head.header
    unlocked = unlock(head, client.devices.keyring().opening_keys())
    first = body[: header.chunk_length(0) + TAG_LENGTH]
    plain = AESGCM(unlocked.keys.payload_key).decrypt(
        chunk_nonce(header.nonce_prefix, 0, header.chunk_count == 1), first, header.digest)
    (length,) = struct.unpack(">I", plain[:4])
    return dict(json.loads(plain[4 : 4 + length]))


async def verify_with_code(portal: Portal, page: Page) -> None:
    await step(page, "verify")
    await page.click("#send-code")
    code = re.search(r"\b(\d{6})\b", await portal.mailbox.next())
    assert code, "the second e-mail carries the code"
    await page.fill("#code", code.group(1))
    await page.click("#verify-submit")


async def test_a_patient_sends_a_camera_photo_and_a_picked_one_that_the_clinician_opens(
        portal: Portal, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    invitation, link = await portal.invite(note=PageNote("Please photograph the rash on your left arm.", ClinicalMetadata(
        patient_ref="Patient/mrn-0815", body_site="left forearm", laterality="left")))
    secret, commitment = link.split("#")[1].split(".")
    page = await portal.open(link)
    assert page.url == link.split("#")[0], "the fragment left the address bar"

    await verify_with_code(portal, page)
    await step(page, "consent")
    assert "rash on your left arm" in await page.inner_text("#note")
    await page.check("#scope-treatment")
    await page.check("#scope-teaching")
    await page.fill("#typed-name", "Ada Lovelace")
    await page.click("#consent-submit")

    await step(page, "capture")
    await page.click("#open-camera")
    await page.wait_for_function("() => document.getElementById('viewfinder').videoWidth > 0")
    await page.click("#shutter")
    original = jpeg_with_gps(1200, 900)
    await page.set_input_files("#picker", files=[{"name": "IMG_0042.jpg", "mimeType": "image/jpeg",
                                                  "buffer": original}])
    await page.wait_for_function("() => document.querySelectorAll('#previews img').length === 2")
    assert await page.evaluate("[...document.querySelectorAll('#previews img')].every(i => i.src.startsWith('blob:'))")

    cut: list[str] = []

    async def cut_first_patch(route: Route) -> None:
        if route.request.method == "PATCH" and not cut:
            cut.append(route.request.url)
            await route.abort("connectionreset")
        else:
            await route.continue_()

    await page.route("**/api/v1/uploads/*", cut_first_patch)
    await page.click("#send")
    await step(page, "done")
    assert "delete them from your phone" in await page.inner_text("section[data-view=done]")
    assert cut, "a PATCH was cut"

    sent = [(request.method, request.url) for request in portal.requests if "/api/v1/uploads" in request.url]
    assert [method for method, _ in sent].count("POST") == 2
    resumed = [index for index, (method, url) in enumerate(sent) if method == "HEAD" and url == cut[0]]
    assert resumed, "the cut upload was resumed from the relay's offset"

    waiting = await portal.clinician.blobs.waiting()
    assert len(waiting) == 2
    view = await portal.clinician.invitations.get(invitation.id)
    assert view["status"] == "verified" and view["uploads_used"] == 2
    sizes = []
    for blob in waiting:
        opened = await portal.clinician.open_blob(blob.blob_id, tmp_path / f"{blob.blob_id}.jpg")
        assert opened.authentic
        photo = (tmp_path / f"{blob.blob_id}.jpg").read_bytes()
        image = assert_no_metadata(photo)
        image.load()
        sizes.append(image.size)
        sealed = tmp_path / f"{blob.blob_id}.sealed"
        await portal.clinician.blobs.download(blob.blob_id, sealed)
        manifest = manifest_of(sealed.read_bytes(), portal.clinician)
        consent = manifest["consent"]
        assert manifest["source"] == "patient_portal" and manifest["content_type"] == "image/jpeg"
        assert consent["scopes"] == ["treatment", "teaching"] and consent["typed_name"] == "Ada Lovelace"
        assert manifest["clinical"]["consent_ref"] == consent["id"] == view["consent_id"]
        assert (manifest["clinical"]["patient_ref"], manifest["clinical"]["body_site"],
                manifest["clinical"]["laterality"]) == ("Patient/mrn-0815", "left forearm", "left")
        assert hashlib.sha256(canonical(consent)).hexdigest() == view["consent_sha256"]
    assert (900, 1200) in sizes, "the picked photo, turned as its EXIF orientation said"
    assert any(size[0] >= 320 for size in sizes if size != (900, 1200)), "the camera still"
    assert Image.open(io.BytesIO(original)).getexif(), "the original carried EXIF"

    foreign = [request.url for request in portal.requests
               if not request.url.startswith((portal.relay.url + "/", f"blob:{portal.relay.url}/", "data:"))]
    assert foreign == [], "every request goes to the relay's origin (or reads the page's own memory)"
    for request in portal.requests:
        sent = request.url + json.dumps(await request.all_headers()) + (request.post_data or "")
        assert commitment not in sent and "#" not in request.url, "the fragment left the browser"
        if request.url != f"{portal.relay.url}/api/v1/portal/sessions":
            assert secret not in sent, "the secret goes only into the body that opens the session"
    logged = "\n".join(record.getMessage() for record in caplog.records
                       if record.name.startswith(("relay", "aiohttp", "socketio", "engineio")))
    assert "/p/" in logged, "the relay's access log was captured"
    assert secret not in logged and commitment not in logged, "the fragment reached the relay's logs"
    assert [error for error in portal.errors if "net::ERR_CONNECTION_RESET" not in error] == []


async def test_a_relay_serving_swapped_keys_gets_nothing(portal: Portal) -> None:
    invitation, link = await portal.invite()
    impostor = RelayClient(portal.relay.url, key_file=Path(portal.relay.runtime.settings.data_dir) / "impostor.json")
    account = await portal.relay.account("mallory")
    await impostor.login(Credentials(account.tenant, account.username, PASSWORD))
    forged = await impostor.use_device("Mallory's laptop")
    await impostor.close()
    assert forged.device_id is not None
    await swap_identity_key(portal.relay, portal.device_id, forged.device_id)

    page = await portal.open(link)
    await verify_with_code(portal, page)
    await step(page, "end")
    assert await page.evaluate("document.body.dataset.end") == "keys_mismatch"
    assert "Nothing was sent" in await page.inner_text("main")
    called = {(request.method, request.url.removeprefix(portal.relay.url)) for request in portal.requests}
    assert ("GET", "/api/v1/portal/recipients") in called
    assert not [path for _, path in called if path.startswith(("/api/v1/uploads", "/api/v1/portal/device",
                                                               "/api/v1/portal/consent"))]
    assert await portal.clinician.blobs.waiting() == []
    spool = portal.relay.runtime.settings.effective_spool_dir
    assert not spool.exists() or not [path for path in spool.rglob("*") if path.is_file()]
    assert (await portal.clinician.invitations.get(invitation.id))["uploads_used"] == 0


async def swap_identity_key(relay: Relay, victim: str, donor: str) -> None:
    """What a compromised database does: the victim device now publishes the donor's identity and
    encryption keys (the donor row loses its identity key, so the tenant's keys stay unique)."""
    devices = tables.devices
    async with relay.runtime.database.engine.begin() as connection:
        row = (await connection.execute(select(devices).where(devices.c.id == donor))).mappings().one()
        keys = {column: row[column]
                for column in ("identity_key", "encryption_key", "encryption_key_id", "encryption_key_signature")}
        await connection.execute(update(devices).where(devices.c.id == donor).values(identity_key=None))
        await connection.execute(update(devices).where(devices.c.id == victim).values(**keys))


@pytest.mark.parametrize(("ending", "page_code"), [
    ("revoke", "invitation_revoked"), ("expire", "invitation_expired"), ("lock", "invitation_locked"),
    ("unknown", "invitation_not_found"), ("wrong_secret", "invitation_not_found"),
])
async def test_ended_invitations_show_what_to_do_next(portal: Portal, ending: str, page_code: str) -> None:
    invitation, link = await portal.invite(verification={"method": "date_of_birth", "date_of_birth": "1970-01-02"},
                                           expires_in=600)
    if ending == "revoke":
        await portal.clinician.invitations.revoke(invitation.id)
    elif ending == "expire":
        portal.relay.clock.advance(601)
    elif ending == "unknown":
        link = link.replace(invitation.id, "f" * 32)
    elif ending == "wrong_secret":
        base, fragment = link.split("#")
        link = f"{base}#{'A' * 43}.{fragment.split('.')[1]}"
    elif ending == "lock":
        page = await portal.open(link)
        await step(page, "verify")
        for attempt in range(5):
            await page.fill("#date-of-birth", f"1980-01-{attempt + 10}")
            await page.click("#verify-submit")
            if attempt < 4:
                await page.wait_for_function(
                    "left => document.getElementById('verify-problem').textContent.includes(left)",
                    arg=f"{4 - attempt} attempt")
        await step(page, "end")
        assert await page.evaluate("document.body.dataset.end") == page_code
    page = await portal.open(link)
    await step(page, "end")
    assert await page.evaluate("document.body.dataset.end") == page_code
    text = await page.inner_text("main")
    assert "care team" in text or "link" in text
    assert PATIENT not in text and invitation.id not in text

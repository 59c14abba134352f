"""Proof that nothing rests here: full photo, chat and patient portal flows with a known marker in the image bytes,
the manifest and message text, then a scan of everything the server wrote (database, Redis, spool, every log
line) finds no marker, and after the last acknowledgement no byte of the ciphertext remains."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio
from relay_client.envelope import ClinicalMetadata, Manifest, open_bytes, seal_bytes
from relay_client.invitations import PageNote

from relay.auth.principal import Role
from tests.support.backends import REDIS_URL, asyncpg_dsn
from tests.support.chat import connected, conversation, open_text, send_text
from tests.support.envelopes import adapter, download, keyring_of, member, recipient_of, upload
from tests.support.harness import Relay
from tests.support.portal import PatientPage, invite, link_in

CANARY = b"CANARY-7f3a9c-PHI-MARKER"
CANARY_TEXT = CANARY.decode()


class CapturedLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    handler, root = CapturedLogs(), logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


def photo(size: int) -> bytes:
    """Image-like bytes with the canary repeated through them."""
    filler = os.urandom(size)
    return filler[: size // 3] + CANARY + filler[size // 3 : 2 * size // 3] + CANARY + filler[2 * size // 3 :]


MANIFEST = Manifest("image/jpeg", ClinicalMetadata(
    patient_ref=f"MRN-{CANARY_TEXT}", body_site=f"left forearm {CANARY_TEXT}", laterality="left",
    captured_at="2026-11-02T09:00:00Z", captured_by=f"dr {CANARY_TEXT}", consent_ref=f"consent-{CANARY_TEXT}",
))


async def everything_written(relay: Relay, logs: CapturedLogs) -> dict[str, bytes]:
    """Every byte the server wrote, by where it lives."""
    written: dict[str, bytes] = {"logs": "\n".join(logs.lines).encode()}
    settings = relay.runtime.settings
    for path in sorted(Path(settings.data_dir).rglob("*")):
        if path.is_file():
            written[f"file {path.relative_to(settings.data_dir)}"] = path.read_bytes()
    if settings.redis_url:
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            async for key in client.scan_iter(match=f"{settings.redis_namespace}:*"):
                dumped = await client.dump(key)
                written[f"redis {key!r}"] = key + (dumped or b"")
        finally:
            await client.aclose()
    if not settings.embedded_database:
        connection = await asyncpg.connect(asyncpg_dsn(settings.database_url))
        try:
            tables = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            for table in tables:
                rows = await connection.fetch(f'SELECT * FROM "{table["tablename"]}"')
                written[f"postgres {table['tablename']}"] = repr([tuple(row.values()) for row in rows]).encode()
        finally:
            await connection.close()
    return written


def hits(written: dict[str, bytes], needle: bytes) -> list[str]:
    return [where for where, data in written.items() if needle in data]


async def test_no_plaintext_and_no_ciphertext_remain_after_full_flows(relay: Relay, logs: CapturedLogs) -> None:
    admin = await relay.account("admin", Role.ADMIN)
    alice = await member(relay, "alice")
    bob = await member(relay, "bob")
    emr = await adapter(relay, admin)

    content = photo(300_000)
    to_bob = await seal_bytes(MANIFEST, content, sender=keyring_of(alice.device).sender,
                              recipients=[recipient_of(bob.device)])
    to_emr = await seal_bytes(MANIFEST, content, sender=keyring_of(alice.device).sender,
                              recipients=[recipient_of(emr.device)])
    for envelope, reader in ((to_bob, bob), (to_emr, emr)):
        blob_id = await upload(relay, alice.token, envelope)
        waiting = await everything_written(relay, logs)
        assert hits(waiting, envelope[-64:-32]), "the scan must see the spool (control)"
        response = await download(relay, reader.token, blob_id)
        assert response.status == 200
        received = await response.read()
        opened = await open_bytes(received, keyring_of(reader.device).opening_keys(),
                                  keyring_of(alice.device).identity_key)
        assert opened.content == content and opened.manifest == MANIFEST
        acked = await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=reader.token)
        assert acked.status in (200, 204)

    written = await everything_written(relay, logs)
    assert any(where.startswith(("postgres audit_events", "file relay.db")) for where in written)
    for needle in (CANARY, CANARY.lower(), CANARY_TEXT.encode("utf-16-le"), content[:64]):
        assert hits(written, needle) == [], f"plaintext found: {hits(written, needle)}"
    for envelope in (to_bob, to_emr):
        for start in range(0, len(envelope) - 32, len(envelope) // 7):
            assert hits(written, envelope[start : start + 32]) == [], "ciphertext outlived its acknowledgement"


async def test_no_plaintext_and_no_ciphertext_remain_after_chat_flows(relay: Relay, logs: CapturedLogs) -> None:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    room = await conversation(relay, alice, [bob])
    content = photo(100_000)
    picture = await seal_bytes(MANIFEST, content, sender=keyring_of(alice.device).sender,
                               recipients=[recipient_of(bob.device)])
    blob_id = await upload(relay, alice.token, picture, conversation=room)
    async with connected(relay, alice.token) as sender, connected(relay, bob.token) as receiver:
        text = await send_text(relay, sender, alice.device, room, f"patient {CANARY_TEXT} looks better")
        shown = await send_text(relay, sender, alice.device, room, f"photo of {CANARY_TEXT}", blob_id=blob_id)
        recalled = await send_text(relay, sender, alice.device, room, f"wrong bed {CANARY_TEXT}")
        envelopes = []
        for _ in range(3):
            event = await receiver.next("message.new")
            envelopes.append(event["envelope"])
            assert CANARY_TEXT in await open_text(bob.device, alice.device, event["envelope"])
        assert hits(await everything_written(relay, logs), envelopes[0][-48:-16]), "the scan sees messages (control)"
        ids = [answer["result"]["message_id"] for answer in (text, shown)]
        await receiver.result("message.ack", {"message_ids": ids})
        await receiver.result("message.read", {"message_ids": ids})
        await sender.result("message.recall", {"message_id": recalled["result"]["message_id"]})
    assert (await download(relay, bob.token, blob_id)).status == 200
    assert (await relay.call("POST", f"/api/v1/blobs/{blob_id}/ack", token=bob.token)).status in (200, 204)

    written = await everything_written(relay, logs)
    for needle in (CANARY, CANARY.lower(), CANARY_TEXT.encode("utf-16-le"), content[:64]):
        assert hits(written, needle) == [], f"plaintext found: {hits(written, needle)}"
    for envelope in (*envelopes, picture):
        for start in range(0, len(envelope) - 32, max(1, len(envelope) // 7)):
            assert hits(written, envelope[start : start + 32]) == [], "ciphertext outlived its acknowledgement"


async def test_no_plaintext_remains_after_a_portal_invitation_is_used_up(relay: Relay, logs: CapturedLogs) -> None:
    alice = await member(relay, "alice")
    contact = f"{CANARY_TEXT}@example.org"
    birth = "1931-07-29"
    note = PageNote(f"photograph the {CANARY_TEXT} wound", ClinicalMetadata(patient_ref=f"Patient/{CANARY_TEXT}"))
    created = await invite(relay, alice.token, [alice.device], contact=contact, note=note, max_uploads=1,
                           verification={"method": "date_of_birth", "date_of_birth": birth})
    sent = relay.runtime.portal.dev_mail.outbox.messages[-1]
    assert sent.to == (contact,) and CANARY_TEXT not in sent.body
    page = PatientPage(relay, link_in(sent.body))
    await page.ready(date_of_birth=birth, typed_name=f"Pat {CANARY_TEXT}")
    assert hits(await everything_written(relay, logs), created["id"].encode()), "the scan sees the invitation (control)"
    content = photo(100_000)
    location, answer = await page.upload(await page.seal(content))
    assert answer.status == 204
    received = await download(relay, alice.token, location.rsplit("/", 1)[1])
    opened = await open_bytes(await received.read(), keyring_of(alice.device).opening_keys(),
                              keyring_of(page.device).identity_key)
    assert opened.content == content and opened.manifest.consent == page.consent
    assert opened.manifest.clinical is not None and opened.manifest.clinical.patient_ref == f"Patient/{CANARY_TEXT}"
    assert (await relay.call("POST", f"/api/v1/blobs/{location.rsplit('/', 1)[1]}/ack", token=alice.token)).status in (
        200, 204)

    written = await everything_written(relay, logs)
    for needle in (CANARY, CANARY.lower(), CANARY_TEXT.encode("utf-16-le"), content[:64], birth.encode(),
                   contact.encode()):
        assert hits(written, needle) == [], f"plaintext found: {hits(written, needle)}"

"""The browser implementation of the sealed envelope (clients/web/src/envelope) against the
Python one, in Debian's Chromium under the relay's CSP: the documented vectors reproduced byte
for byte; a 5 MiB photo sealed in Python and opened in the browser, and the other way round,
for several recipients; tampering ending in the same typed errors; and no plaintext released
before its tag verified. Runs once (no backend is involved)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from playwright.async_api import Browser

from relay.keys.routing_view import read_routing_view
from relay_client.envelope import (
    ClinicalMetadata,
    DeviceKeyring,
    EnvelopeError,
    Manifest,
    PublishedKey,
    Recipient,
    open_bytes,
    seal_bytes,
    split_envelope,
)
from relay_client.envelope.format import SIGNATURE_LENGTH, TAG_LENGTH, decode_head
from relay_client.envelope.keys import raw_public
from relay_client.envelope.manifest import LENGTH_PREFIX
from tests.support.browser import OpenedPage, WebSite, launch_chromium, open_page, serve_web
from tests.test_envelope_vectors import (
    CHUNK_SIZE,
    CONTENTS,
    EPHEMERAL_KEY,
    IDENTITY_SEED,
    KEY_ID,
    MANIFEST,
    RECIPIENT_DEVICE,
    RECIPIENT_KEY,
    SECRETS,
    SENDER_DEVICE,
    documented_value,
    seal_vector,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

PAGE = "/test/envelope.html"
MIB = 1024 * 1024
PHOTO = b"\xff\xd8\xff\xe0" + os.urandom(5 * MIB - 4)
PHOTO_MANIFEST = Manifest("image/jpeg", ClinicalMetadata(
    patient_ref="Patient/4711", encounter_ref="Encounter/88", body_site="left forearm", laterality="left",
    captured_at="2025-01-31T14:05:00.250Z", captured_by="0123456789abcdef0123456789abcdef",
    consent_ref="Consent/12"))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pkcs8(key: X25519PrivateKey | Ed25519PrivateKey) -> str:
    return b64(key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()))


def published(key: PublishedKey | None) -> dict[str, str] | None:
    if key is None:
        return None
    return {"keyId": key.key_id, "publicKey": b64(key.public_key), "signature": b64(key.signature)}


@dataclass
class Device:
    """A device's keys in the forms both sides take: Python objects, and the page's arguments."""

    keyring: DeviceKeyring
    use_one_time_key: bool = False

    @classmethod
    def generate(cls, *, use_one_time_key: bool = False) -> Device:
        keyring = DeviceKeyring.generate(os.urandom(16).hex(), one_time_keys=1 if use_one_time_key else 0)
        return cls(keyring, use_one_time_key)

    @property
    def device_id(self) -> str:
        return self.keyring.device_id

    @property
    def identity_key(self) -> str:
        return b64(raw_public(self.keyring.identity_key))

    def directory_entry(self) -> dict[str, Any]:
        """What a sender reads from the key directory: the page verifies it (Recipient.fromDirectory)."""
        one_time = self.keyring.published_one_time_keys()[0] if self.use_one_time_key else None
        return {"deviceId": self.device_id, "identityKey": self.identity_key,
                "encryptionKey": published(self.keyring.published_encryption_key()),
                "oneTimeKey": published(one_time)}

    def recipient(self) -> Recipient:
        one_time = self.keyring.published_one_time_keys()[0] if self.use_one_time_key else None
        return Recipient.from_directory(self.device_id, raw_public(self.keyring.identity_key),
                                        self.keyring.published_encryption_key(), one_time)

    def opening_keys(self) -> dict[str, Any]:
        keys = self.keyring.opening_keys().private_keys
        return {"deviceId": self.device_id, "keys": [
            {"keyId": key_id, "privateKey": pkcs8(key), "publicKey": b64(raw_public(key.public_key()))}
            for key_id, key in keys.items()]}

    def sealing_keys(self) -> dict[str, str]:
        return {"deviceId": self.device_id, "identityPrivateKey": pkcs8(self.keyring.identity)}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site() -> AsyncIterator[WebSite]:
    async with serve_web() as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_page(site: WebSite, browser: Browser) -> AsyncIterator[OpenedPage]:
    """One page for the module: its functions keep no state between calls, and loading its ES
    modules (about 65 files, none cached) is most of a test's time."""
    async with open_page(browser, site.url + PAGE, ready="envelopeTest") as opened:
        yield opened


@pytest_asyncio.fixture(loop_scope="module")
async def page(shared_page: OpenedPage) -> AsyncIterator[OpenedPage]:
    shared_page.errors.clear()
    yield shared_page
    assert shared_page.errors == [], "the page logged errors (a CSP violation is one)"


async def call(page: OpenedPage, function: str, argument: Any) -> dict[str, Any]:
    result = await page.evaluate(f"argument => window.envelopeTest.{function}(argument)", argument)
    assert isinstance(result, dict)
    return result


async def browser_opens(page: OpenedPage, site: WebSite, envelope: bytes, device: Device, sender: Device, *,
                        via: str = "stream") -> dict[str, Any]:
    return await call(page, "open", {"envelopeUrl": site.publish(envelope), "device": device.opening_keys(),
                                     "senderIdentityKey": sender.identity_key, "via": via})


async def python_seals(content: bytes, sender: Device, recipients: list[Device], *,
                       manifest: Manifest = PHOTO_MANIFEST, chunk_size: int = 64 * 1024) -> bytes:
    return await seal_bytes(manifest, content, sender=sender.keyring.sender,
                            recipients=[device.recipient() for device in recipients], chunk_size=chunk_size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vector_recipient() -> dict[str, Any]:
    """The test vectors' recipient device, as the page takes opening keys."""
    key = X25519PrivateKey.from_private_bytes(RECIPIENT_KEY)
    return {"deviceId": RECIPIENT_DEVICE, "keys": [
        {"keyId": KEY_ID, "privateKey": pkcs8(key), "publicKey": b64(raw_public(key.public_key()))}]}


async def test_the_browser_reproduces_the_documented_vectors_byte_for_byte(page: OpenedPage) -> None:
    identity = Ed25519PrivateKey.from_private_bytes(IDENTITY_SEED)
    ephemeral = X25519PrivateKey.from_private_bytes(EPHEMERAL_KEY)
    for name, content in CONTENTS.items():
        result = await call(page, "sealVector", {
            "sender": {"deviceId": SENDER_DEVICE, "identityPrivateKey": pkcs8(identity)},
            "recipient": vector_recipient(),
            "ephemeralPrivateKey": pkcs8(ephemeral), "ephemeralPublicKey": b64(raw_public(ephemeral.public_key())),
            "contentKey": b64(SECRETS.content_key), "envelopeId": SECRETS.envelope_id,
            "noncePrefix": b64(SECRETS.nonce_prefix), "chunkSize": CHUNK_SIZE,
            "manifest": MANIFEST.to_json(), "content": b64(content),
        })
        envelope = base64.b64decode(result["envelope"])
        assert sha256(envelope) == documented_value(name, "envelope_sha256"), name
        assert envelope == await asyncio.to_thread(seal_vector, name)


async def test_the_browser_opens_the_documented_envelopes(page: OpenedPage, site: WebSite) -> None:
    identity = b64(raw_public(Ed25519PrivateKey.from_private_bytes(IDENTITY_SEED).public_key()))
    envelopes = {"small": bytes.fromhex(documented_value("small", "envelope")),
                 "three-chunk": await asyncio.to_thread(seal_vector, "three-chunk")}
    for name, envelope in envelopes.items():
        for via in ("stream", "bytes"):
            result = await call(page, "open", {"envelopeUrl": site.publish(envelope), "device": vector_recipient(),
                                               "senderIdentityKey": identity, "via": via})
            assert result["error"] is None, result
            assert (result["manifest"], result["releasedSha256"]) == (MANIFEST.to_json(), sha256(CONTENTS[name]))
            assert (result["authentic"], result["envelopeId"], result["senderDeviceId"]) == (
                "authentic", SECRETS.envelope_id, SENDER_DEVICE)


@pytest.mark.parametrize("via", ["stream", "blob", "bytes"])
async def test_a_photo_sealed_in_python_opens_in_the_browser_for_every_recipient(
        page: OpenedPage, site: WebSite, via: str) -> None:
    sender = Device.generate()
    recipients = [Device.generate(), Device.generate(use_one_time_key=True), Device.generate()]
    envelope = await python_seals(PHOTO, sender, recipients)
    for device in recipients:
        result = await browser_opens(page, site, envelope, device, sender, via=via)
        assert result["error"] is None, result
        assert result["manifest"] == PHOTO_MANIFEST.to_json()
        assert (result["released"], result["releasedSha256"]) == (len(PHOTO), sha256(PHOTO))
        assert result["keyId"] == ("otk-0" if device.use_one_time_key else "enc-1")
        assert (result["authentic"], result["addressedBySender"]) == ("authentic", True)
        if via == "blob":
            assert result["contentType"] == "image/jpeg"


@pytest.mark.parametrize("via", ["blob", "stream"])
async def test_a_photo_sealed_in_the_browser_opens_in_python_for_every_recipient(
        page: OpenedPage, site: WebSite, via: str) -> None:
    sender = Device.generate()
    recipients = [Device.generate(), Device.generate(use_one_time_key=True), Device.generate()]
    result = await call(page, "seal", {
        "contentUrl": site.publish(PHOTO, "image/jpeg"), "contentLength": len(PHOTO), "via": via,
        "manifest": PHOTO_MANIFEST.to_json(), "sender": sender.sealing_keys(), "chunkSize": 64 * 1024,
        "recipients": [device.directory_entry() for device in recipients], "uploadUrl": site.upload_url(via),
    })
    assert "error" not in result, result
    envelope = site.received[via]
    assert len(envelope) == result["length"] == result["size"]
    view = read_routing_view(envelope)
    assert [(r.device_id, r.key_id) for r in view.recipients] == [
        (device.device_id, "otk-0" if device.use_one_time_key else "enc-1") for device in recipients]
    assert (view.envelope_id, view.sender_device_id, view.total_length) == (
        result["envelopeId"], sender.device_id, len(envelope))
    for device in recipients:
        message = await open_bytes(envelope, device.keyring.opening_keys(), sender.keyring.identity_key)
        assert (message.manifest, message.content == PHOTO, message.addressed_by_sender) == (PHOTO_MANIFEST, True, True)


async def test_a_key_not_signed_by_its_device_is_refused_before_anything_is_sealed(
        page: OpenedPage, site: WebSite) -> None:
    sender, honest, impostor = Device.generate(), Device.generate(), Device.generate()
    forged = honest.directory_entry() | {"encryptionKey": published(impostor.keyring.published_encryption_key())}
    result = await call(page, "seal", {
        "contentUrl": site.publish(b"note"), "via": "blob", "manifest": Manifest("text/plain").to_json(),
        "sender": sender.sealing_keys(), "chunkSize": 64 * 1024, "recipients": [forged],
        "uploadUrl": site.upload_url("forged"),
    })
    assert result["error"]["name"] == "UntrustedKey"
    assert "forged" not in site.received


async def test_a_content_of_another_length_than_announced_fails_the_seal(page: OpenedPage, site: WebSite) -> None:
    sender, recipient = Device.generate(), Device.generate()
    for announced in (len(PHOTO) - 1, len(PHOTO) + 1):
        result = await call(page, "seal", {
            "contentUrl": site.publish(PHOTO), "contentLength": announced, "via": "stream",
            "manifest": PHOTO_MANIFEST.to_json(), "sender": sender.sealing_keys(), "chunkSize": 64 * 1024,
            "recipients": [recipient.directory_entry()], "uploadUrl": site.upload_url(f"length-{announced}"),
        })
        assert result["error"]["name"] == "RangeError", result
        assert f"length-{announced}" not in site.received


async def test_sealing_reads_a_large_stream_only_as_fast_as_the_envelope_is_taken(page: OpenedPage) -> None:
    result = await call(page, "sealLazily", {"contentLength": (1 << 40) - 1000, "pieceSize": 64 * 1024,
                                             "outputPieces": 10})
    assert "error" not in result, result
    assert result["pulled"] < 4 * MIB, "a few chunks ahead of the 10 taken, not the whole content"
    assert result["pulledAfterCancel"] == result["pulled"], "cancelling the envelope stops reading the content"


async def test_a_large_stream_seals_and_opens_stream_to_stream_in_bounded_memory(page: OpenedPage) -> None:
    result = await call(page, "sealIntoOpen", {"contentLength": 48 * MIB + 123, "pieceSize": 100_000})
    assert "error" not in result, result
    assert (result["released"], result["authentic"]) == (48 * MIB + 123, True)
    assert result["mostInTransit"] < 4 * MIB


class Scene:
    """One envelope from ``sender`` to ``me`` and ``other``, 4 chunks of 16 KiB; cases change it."""

    def __init__(self) -> None:
        self.sender, self.me, self.other = Device.generate(), Device.generate(), Device.generate()
        self.content = os.urandom(60_000)


CHUNK_ON_WIRE = 16 * 1024 + TAG_LENGTH


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


CODES = {"ChunkTampered": "chunk_tampered", "Truncated": "truncated", "BadSignature": "bad_signature",
         "MalformedEnvelope": "malformed_envelope", "HeaderTampered": "header_tampered",
         "UnwrapFailed": "unwrap_failed", "UnsupportedVersion": "unsupported_version"}
TAMPERING: dict[str, tuple[str, Any]] = {
    "a bit flipped in a chunk": ("ChunkTampered", lambda e, head: flip(e, head + 3 * 16 * 1024)),
    "cut inside a chunk": ("Truncated", lambda e, head: e[: head + 20_000]),
    "cut after the last chunk": ("Truncated", lambda e, head: e[:-SIGNATURE_LENGTH]),
    "a chunk left out": ("ChunkTampered", lambda e, head: e[: head + CHUNK_ON_WIRE] + e[head + 2 * CHUNK_ON_WIRE :]),
    "the signature altered": ("BadSignature", lambda e, head: flip(e, len(e) - 1)),
    "bytes after the signature": ("MalformedEnvelope", lambda e, head: e + b"\x00"),
    "the header MAC altered": ("HeaderTampered", lambda e, head: flip(e, head - 1)),
    "the fixed header altered": ("UnwrapFailed", lambda e, head: flip(e, 52)),
    "another version": ("UnsupportedVersion", lambda e, head: e[:4] + b"\x02" + e[5:]),
}


@pytest.mark.parametrize("case", TAMPERING)
async def test_a_tampered_envelope_is_refused_in_the_browser_with_the_typed_error(
        page: OpenedPage, site: WebSite, case: str) -> None:
    scene = Scene()
    envelope = await python_seals(scene.content, scene.sender, [scene.me, scene.other], chunk_size=16 * 1024)
    head_length = len(split_envelope(envelope)[0])
    expected, tamper = TAMPERING[case]
    tampered = tamper(envelope, head_length)
    result = await browser_opens(page, site, tampered, scene.me, scene.sender)
    assert (result["error"]["name"], result["error"]["code"]) == (expected, CODES[expected]), result
    assert result["authentic"] in (None, expected), "an envelope that failed is never authentic"
    with pytest.raises(EnvelopeError) as python_error:
        await open_bytes(tampered, scene.me.keyring.opening_keys(), scene.sender.keyring.identity_key)
    assert (type(python_error.value).__name__, python_error.value.code) == (expected, CODES[expected])


async def test_an_envelope_for_other_devices_or_keys_does_not_open_in_the_browser(
        page: OpenedPage, site: WebSite) -> None:
    scene = Scene()
    envelope = await python_seals(scene.content, scene.sender, [scene.me, scene.other], chunk_size=16 * 1024)
    stranger = Device.generate()
    result = await browser_opens(page, site, envelope, stranger, scene.sender)
    assert (result["error"]["name"], result["error"]["code"]) == ("NotARecipient", "not_a_recipient")
    same_device_other_key = Device(DeviceKeyring.generate(scene.me.device_id))
    result = await browser_opens(page, site, envelope, same_device_other_key, scene.sender)
    assert (result["error"]["name"], result["error"]["code"]) == ("UnwrapFailed", "unwrap_failed")
    result = await browser_opens(page, site, envelope, scene.me, stranger)
    assert (result["error"]["name"], result["authentic"]) == ("BadSignature", "BadSignature")
    assert result["released"] == len(scene.content), "every chunk verified; only the signature did not"


async def test_opening_releases_no_chunk_before_its_tag_verifies(page: OpenedPage, site: WebSite) -> None:
    scene = Scene()
    chunk_size = 64 * 1024
    content = os.urandom(3 * chunk_size - 1000)
    envelope = await python_seals(content, scene.sender, [scene.me], chunk_size=chunk_size)
    head_length = len(split_envelope(envelope)[0])
    assert decode_head(split_envelope(envelope)[0]).header.chunk_count == 3
    frame = LENGTH_PREFIX.size + len(PHOTO_MANIFEST.encode())
    first_chunk_content = content[: chunk_size - frame]

    second_tampered = flip(envelope, head_length + chunk_size + TAG_LENGTH + 100)
    result = await browser_opens(page, site, second_tampered, scene.me, scene.sender)
    assert (result["error"]["name"], result["authentic"]) == ("ChunkTampered", "ChunkTampered")
    assert result["manifest"] == PHOTO_MANIFEST.to_json(), "the manifest came from the verified first chunk"
    assert (result["released"], result["releasedSha256"]) == (len(first_chunk_content), sha256(first_chunk_content))

    first_tampered = flip(envelope, head_length + 10)
    result = await browser_opens(page, site, first_tampered, scene.me, scene.sender)
    assert (result["error"]["name"], result["manifest"], result["released"]) == ("ChunkTampered", None, 0)


async def test_a_recipient_appended_in_the_browser_opens_the_envelope_in_python(
        page: OpenedPage, site: WebSite) -> None:
    sender, me, consultant = Device.generate(), Device.generate(), Device.generate(use_one_time_key=True)
    envelope = await python_seals(b"case summary", sender, [me], manifest=Manifest("text/plain; charset=utf-8"))
    head, body = split_envelope(envelope)
    result = await call(page, "append", {"head": b64(head), "device": me.opening_keys(),
                                         "recipients": [consultant.directory_entry()]})
    new_head = base64.b64decode(result["head"])
    message = await open_bytes(new_head + body, consultant.keyring.opening_keys(), sender.keyring.identity_key)
    assert (message.content, message.key_id, message.addressed_by_sender) == (b"case summary", "otk-0", False)
    again = await call(page, "append", {"head": result["head"], "device": me.opening_keys(),
                                        "recipients": [consultant.directory_entry()]})
    assert again["error"]["name"] == "RangeError", "a device already addressed is refused"
    stranger = await call(page, "append", {"head": b64(head), "device": consultant.opening_keys(),
                                           "recipients": [Device.generate().directory_entry()]})
    assert stranger["error"]["name"] == "NotARecipient"


MANIFEST_CASES = [
    PHOTO_MANIFEST.encode(),
    b'{"content_type":"text/plain","v":1}',
    b'{"content_type":"text/plain","later_field":{"x":[1,true,null,"\\u001f"]},"v":1}',
    b'{"clinical":null,"content_type":"text/plain","v":1}',
    b'{"clinical":{"body_site":"\xf0\x9f\xa6\xb6 \\"sole\\"","note":7},"content_type":"image/png","v":1}',
    b'{"content_type": "text/plain","v":1}',
    b'{"v":1,"content_type":"text/plain"}',
    b'{"content_type":"text/plain","v":1.0}',
    b'{"content_type":"text/plain","v":1,"v":1}',
    b'{"content_type":"text/plain","v":2}',
    b'{"content_type":"text/plain","v":true}',
    b'{"content_type":"Text/Plain","v":1}',
    b'{"content_type":"text/plain","v":1,"x":9007199254740993}',
    b'{"content_type":"text/plain","v":1,"x":"\\ud800"}',
    b'{"content_type":"text/plain","v":1,"x":"\\ud83e\\uddb6"}',
    b'{"content_type":"text/plain","v":1,"x":"\\u001F"}',
    b'{"content_type":"text/plain","v":1,"x":"a\\/b"}',
    b'{"content_type":"text/plain","v":1,"X":1}',
    b'{"content_type":"text/plain","v":1,"x":-0}',
    b'\xef\xbb\xbf{"content_type":"text/plain","v":1}',
    b'{"content_type":"text/plain","v":1,"x":"\xff"}',
    b'{"clinical":{"laterality":"up"},"content_type":"text/plain","v":1}',
    b'{"clinical":{"captured_at":"2024-02-30T10:00:00Z"},"content_type":"text/plain","v":1}',
    b'{"clinical":{"captured_at":"2024-02-29T23:59:59.123456Z"},"content_type":"text/plain","v":1}',
    b'{"clinical":{"patient_ref":""},"content_type":"text/plain","v":1}',
    b'{"clinical":[],"content_type":"text/plain","v":1}',
    b'[1]',
    b'{"clinical":{"captured_at":"2025-01-31T14:05:00.5Z"},"content_type":"text/plain","v":1}',
    b'{"clinical":{"captured_at":"2025-01-31T14:05:00.1234567Z"},"content_type":"text/plain","v":1}',
    '{"clinical":{"captured_at":"٢٠٢٥-01-31T14:05:00Z"},"content_type":"text/plain","v":1}'.encode(),
    b'{"clinical":{"captured_at":"2025-01-31T14:05:60Z"},"content_type":"text/plain","v":1}',
    b'{"clinical":{"captured_at":"0000-01-01T00:00:00Z"},"content_type":"text/plain","v":1}',
    ('{"clinical":{"body_site":"' + "\U0001f9b6" * 256 + '"},"content_type":"text/plain","v":1}').encode(),
    ('{"clinical":{"body_site":"' + "\U0001f9b6" * 257 + '"},"content_type":"text/plain","v":1}').encode(),
    b'{"content_type":"text/plain;charset=utf-8","v":1}',
    b'{"content_type":"text/plain;  charset=utf-8","v":1}',
    b'{"7":1,"content_type":"text/plain","v":1}',
    b'{"content_type":"text/plain","v":1,"7":1}',
]


async def test_the_browser_and_python_agree_on_every_manifest(page: OpenedPage) -> None:
    def python_verdict(data: bytes) -> dict[str, Any]:
        try:
            return {"json": Manifest.decode(data).to_json()}
        except EnvelopeError as error:
            return {"error": type(error).__name__}

    browser = await page.evaluate("m => window.envelopeTest.decodeManifests(m)", [b64(m) for m in MANIFEST_CASES])
    python = [python_verdict(data) for data in MANIFEST_CASES]
    assert browser == python, json.dumps(list(zip(MANIFEST_CASES, browser, python, strict=True)), default=str)
    assert sum("json" in verdict for verdict in python) == 10

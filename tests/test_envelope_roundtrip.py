"""Sealing and opening envelopes end to end: sizes around every chunk boundary, many
recipients, one-time keys, files, and what a streaming reader sees before the end."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay_client.envelope import (
    DEFAULT_CHUNK_SIZE,
    BadSignature,
    ChunkTampered,
    ClinicalMetadata,
    EnvelopeSecrets,
    Manifest,
    NotARecipient,
    Recipient,
    SenderIdentity,
    UntrustedKey,
    open_bytes,
    open_file,
    read_envelope,
    seal,
    seal_bytes,
    seal_file,
)
from relay_client.envelope.format import MIN_CHUNK_SIZE, split_envelope
from relay_client.envelope.keys import DeviceKeyring
from relay_client.envelope.streams import iterate_bytes

PHOTO = Manifest("image/jpeg", ClinicalMetadata(
    patient_ref="Patient/8c1e", encounter_ref="Encounter/77", body_site="left forearm", laterality="left",
    captured_at="2025-01-31T14:05:00Z", captured_by="user-42", consent_ref="Consent/9",
))
FRAME = len(PHOTO.frame())


def device() -> DeviceKeyring:
    return DeviceKeyring.generate(os.urandom(16).hex())


def recipient(keyring: DeviceKeyring) -> Recipient:
    return Recipient.from_directory(keyring.device_id, keyring.identity_key.public_bytes_raw(),
                                    keyring.published_encryption_key())


async def pieces_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


SIZES = {
    "empty": 0,
    "one byte": 1,
    "plaintext chunk-1": DEFAULT_CHUNK_SIZE - 1 - FRAME,
    "plaintext chunk": DEFAULT_CHUNK_SIZE - FRAME,
    "plaintext chunk+1": DEFAULT_CHUNK_SIZE + 1 - FRAME,
    "content chunk-1": DEFAULT_CHUNK_SIZE - 1,
    "content chunk": DEFAULT_CHUNK_SIZE,
    "content chunk+1": DEFAULT_CHUNK_SIZE + 1,
    "10 MiB": 10 * 1024 * 1024,
}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
async def test_streamed_round_trip_at_every_boundary(size: int) -> None:
    sender, reader = device(), device()
    content = os.urandom(size)
    sealed = seal(PHOTO, pieces_of(content, 10_000), size, sender=sender.sender, recipients=[recipient(reader)])
    wire = [piece async for piece in sealed]
    assert sum(map(len, wire)) == sealed.length

    envelope = await read_envelope(pieces_of(b"".join(wire), 7_777))
    assert envelope.sender_device_id == sender.device_id
    opened = await envelope.unlock(reader.opening_keys(), sender.identity_key)
    received = b"".join([piece async for piece in opened.content()])

    assert received == content
    assert opened.authentic and opened.addressed_by_sender
    assert opened.manifest == PHOTO
    assert opened.envelope_id == sealed.envelope_id


async def test_every_recipient_opens_the_same_message_and_outsiders_cannot() -> None:
    sender, outsider = device(), device()
    readers = [device() for _ in range(5)]
    content = b"BP 120/80, wound healing well"
    envelope = await seal_bytes(Manifest("text/plain; charset=utf-8"), content, sender=sender.sender,
                                recipients=[recipient(reader) for reader in readers])
    for reader in readers:
        message = await open_bytes(envelope, reader.opening_keys(), sender.identity_key)
        assert (message.content, message.sender_device_id) == (content, sender.device_id)
    with pytest.raises(NotARecipient):
        await open_bytes(envelope, outsider.opening_keys(), sender.identity_key)


async def test_the_smallest_and_largest_chunk_sizes_round_trip() -> None:
    sender, reader = device(), device()
    content = os.urandom(5 * MIN_CHUNK_SIZE + 3)
    for chunk_size in (MIN_CHUNK_SIZE, 4 * 1024 * 1024):
        envelope = await seal_bytes(PHOTO, content, sender=sender.sender, recipients=[recipient(reader)],
                                    chunk_size=chunk_size)
        assert (await open_bytes(envelope, reader.opening_keys(), sender.identity_key)).content == content


async def test_a_claimed_one_time_key_is_used_and_cannot_open_twice_once_forgotten() -> None:
    sender = device()
    reader = DeviceKeyring.generate(os.urandom(16).hex(), one_time_keys=2)
    one_time = reader.published_one_time_keys()[0]
    chosen = Recipient.from_directory(reader.device_id, reader.identity_key.public_bytes_raw(),
                                      reader.published_encryption_key(), one_time)
    assert chosen.key_id == one_time.key_id
    envelope = await seal_bytes(PHOTO, b"photo", sender=sender.sender, recipients=[chosen])

    message = await open_bytes(envelope, reader.opening_keys(), sender.identity_key)
    assert (message.content, message.key_id) == (b"photo", one_time.key_id)
    reader.forget_one_time_key(message.key_id)
    with pytest.raises(NotARecipient):
        await open_bytes(envelope, reader.opening_keys(), sender.identity_key)


def test_a_directory_key_not_signed_by_the_device_identity_is_refused() -> None:
    reader, impostor = device(), device()
    with pytest.raises(UntrustedKey):
        Recipient.from_directory(reader.device_id, reader.identity_key.public_bytes_raw(),
                                 impostor.published_encryption_key())
    swapped = impostor.published_one_time_keys() or [impostor.published_encryption_key()]
    with pytest.raises(UntrustedKey):
        Recipient.from_directory(reader.device_id, reader.identity_key.public_bytes_raw(),
                                 reader.published_encryption_key(), swapped[0])


async def test_files_round_trip_and_a_failed_open_leaves_no_file(tmp_path: Path) -> None:
    sender, reader = device(), device()
    photo, sealed_path, opened_path = tmp_path / "photo.jpg", tmp_path / "photo.relay", tmp_path / "out.jpg"
    photo.write_bytes(os.urandom(300_000))
    sealed = await seal_file(PHOTO, photo, sealed_path, sender=sender.sender, recipients=[recipient(reader)])
    assert sealed_path.stat().st_size == sealed.length

    opened = await open_file(sealed_path, opened_path, reader.opening_keys(), sender.identity_key)
    assert opened.authentic and opened_path.read_bytes() == photo.read_bytes()

    damaged = bytearray(sealed_path.read_bytes())
    damaged[-100] ^= 1
    sealed_path.write_bytes(damaged)
    with pytest.raises(ChunkTampered):
        await open_file(sealed_path, tmp_path / "never.jpg", reader.opening_keys(), sender.identity_key)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.jpg", "photo.jpg", "photo.relay"]


async def test_pieces_arrive_before_the_envelope_is_read_to_the_end() -> None:
    sender, reader = device(), device()
    envelope = await seal_bytes(PHOTO, os.urandom(8 * DEFAULT_CHUNK_SIZE), sender=sender.sender,
                                recipients=[recipient(reader)])
    consumed = 0

    async def counting() -> AsyncIterator[bytes]:
        nonlocal consumed
        async for piece in iterate_bytes(envelope, 4096):
            consumed += len(piece)
            yield piece

    opened = await (await read_envelope(counting())).unlock(reader.opening_keys(), sender.identity_key)
    pieces = opened.content()
    await anext(pieces)
    assert consumed < 3 * DEFAULT_CHUNK_SIZE and not opened.authentic
    async for _ in pieces:
        pass
    assert consumed == len(envelope) and opened.authentic


async def test_a_co_recipient_forgery_streams_provisionally_then_fails_at_the_signature() -> None:
    """A co-recipient knows the content key, so its chunks pass their tags; only the sender's
    signature, checked after the last chunk, exposes the forgery."""
    sender, reader, forger = device(), device(), device()
    secrets = EnvelopeSecrets.random()
    recipients = [recipient(reader), recipient(forger)]
    await seal_bytes(PHOTO, b"a" * 100_000, sender=sender.sender, recipients=recipients, secrets=secrets)
    posing = SenderIdentity(sender.device_id, forger.identity)
    forged = await seal_bytes(PHOTO, b"b" * 100_000, sender=posing, recipients=recipients, secrets=secrets)

    opened = await (await read_envelope(iterate_bytes(forged))).unlock(reader.opening_keys(), sender.identity_key)
    provisional = []
    with pytest.raises(BadSignature):
        async for piece in opened.content():
            provisional.append(piece)
    assert b"".join(provisional) == b"b" * 100_000
    assert not opened.authentic


async def test_sealing_refuses_bad_arguments() -> None:
    sender, reader = device(), device()
    to = [recipient(reader)]
    with pytest.raises(ValueError):
        seal(PHOTO, iterate_bytes(b""), 0, sender=sender.sender, recipients=[])
    with pytest.raises(ValueError):
        seal(PHOTO, iterate_bytes(b""), 0, sender=sender.sender, recipients=to + to)
    with pytest.raises(ValueError):
        seal(PHOTO, iterate_bytes(b""), 0, sender=sender.sender, recipients=to, chunk_size=MIN_CHUNK_SIZE - 1)
    with pytest.raises(ValueError):
        seal(PHOTO, iterate_bytes(b""), -1, sender=sender.sender, recipients=to)
    for announced, actual in ((10, 9), (10, 11)):
        sealed = seal(PHOTO, iterate_bytes(b"x" * actual), announced, sender=sender.sender, recipients=to)
        with pytest.raises(ValueError):
            async for _ in sealed:
                pass


async def test_head_and_body_split_where_the_relay_stores_them_apart() -> None:
    sender, reader = device(), device()
    sealed = seal(PHOTO, iterate_bytes(b"x" * 1000), 1000, sender=sender.sender, recipients=[recipient(reader)])
    body = b"".join([piece async for piece in sealed.body()])
    assert split_envelope(sealed.head + body) == (sealed.head, body)
    message = await open_bytes(sealed.head + body, reader.opening_keys(), sender.identity_key)
    assert message.content == b"x" * 1000

"""What a malicious relay (or co-recipient) can do to an envelope, and the typed error each
attempt ends in: every single-bit flip, truncation, reordering, duplication, swapped stanzas,
wrong keys."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from relay_client.envelope import (
    BadSignature,
    ChunkTampered,
    EnvelopeError,
    HeaderTampered,
    MalformedEnvelope,
    Manifest,
    NotARecipient,
    Recipient,
    Truncated,
    UnsupportedVersion,
    UnwrapFailed,
    open_bytes,
    seal_bytes,
)
from relay_client.envelope.format import (
    COUNT,
    FIXED_HEADER_LENGTH,
    MAC_LENGTH,
    MIN_CHUNK_SIZE,
    SIGNATURE_LENGTH,
    TAG_LENGTH,
    Head,
    decode_head,
    split_envelope,
)
from relay_client.envelope.keys import DeviceKeyring, DeviceKeys
from relay_client.envelope.schedule import derive, header_mac, hpke_wrap
from relay_client.envelope.seal import EnvelopeSecrets, wrap_stanza
from relay_client.envelope.unlock import unlock

NOTE = Manifest("text/plain; charset=utf-8")
HEADER_ERRORS = (MalformedEnvelope, UnsupportedVersion, Truncated, UnwrapFailed, HeaderTampered, NotARecipient)


def device() -> DeviceKeyring:
    return DeviceKeyring.generate(os.urandom(16).hex())


def to(keyring: DeviceKeyring) -> Recipient:
    return Recipient(keyring.device_id, keyring.encryption_key_id, keyring.encryption_key.public_key())


class Scene:
    """An envelope from ``sender`` to ``me`` (stanza 0) and ``other`` (stanza 1)."""

    def __init__(self, content: bytes, chunk_size: int = MIN_CHUNK_SIZE) -> None:
        self.sender, self.me, self.other = device(), device(), device()
        self.content = content
        self.chunk_size = chunk_size

    async def seal(self, secrets: EnvelopeSecrets | None = None) -> bytes:
        return await seal_bytes(NOTE, self.content, sender=self.sender.sender, recipients=[to(self.me), to(self.other)],
                                chunk_size=self.chunk_size, secrets=secrets)

    async def open(self, envelope: bytes, keys: DeviceKeys | None = None) -> bytes:
        message = await open_bytes(envelope, keys or self.me.opening_keys(), self.sender.identity_key)
        return message.content


def regions(envelope: bytes) -> dict[str, range]:
    head_bytes, _ = split_envelope(envelope)
    head = decode_head(head_bytes)
    found = {"fixed header": range(0, FIXED_HEADER_LENGTH + COUNT.size)}
    position = FIXED_HEADER_LENGTH + COUNT.size
    for index, stanza in enumerate(head.stanzas):
        size = len(stanza.encode())
        found[f"stanza {index}"] = range(position, position + size)
        position += size
    found["header MAC"] = range(position, position + MAC_LENGTH)
    position += MAC_LENGTH
    for index in range(head.header.chunk_count):
        size = head.header.chunk_length(index) + TAG_LENGTH
        found[f"chunk {index}"] = range(position, position + size)
        position += size
    found["signature"] = range(position, position + SIGNATURE_LENGTH)
    assert position + SIGNATURE_LENGTH == len(envelope)
    return found


EXPECTED = {
    "fixed header": HEADER_ERRORS,
    "stanza 0": (NotARecipient, MalformedEnvelope, UnwrapFailed),
    "stanza 1": (HeaderTampered, MalformedEnvelope, Truncated),
    "header MAC": (HeaderTampered,),
    "chunk": (ChunkTampered,),
    "signature": (BadSignature,),
}


def expected(region: str) -> tuple[type[EnvelopeError], ...]:
    return EXPECTED["chunk" if region.startswith("chunk") else region]


def flipped(envelope: bytes, bits: Iterator[int]) -> Iterator[tuple[int, bytes]]:
    for bit in bits:
        changed = bytearray(envelope)
        changed[bit // 8] ^= 1 << (bit % 8)
        yield bit, bytes(changed)


async def assert_rejected(scene: Scene, envelope: bytes, region: str, bits: Iterator[int]) -> int:
    count = 0
    for bit, changed in flipped(envelope, bits):
        with pytest.raises(EnvelopeError) as raised:
            await scene.open(changed)
        assert isinstance(raised.value, expected(region)), (region, bit, raised.value)
        count += 1
    return count


async def test_every_single_bit_flip_anywhere_in_a_small_envelope_is_rejected() -> None:
    scene = Scene(b"Consult: please review the attached wound photo.")
    envelope = await scene.seal()
    assert await scene.open(envelope) == scene.content
    checked = 0
    for region, positions in regions(envelope).items():
        checked += await assert_rejected(scene, envelope, region, iter(range(positions.start * 8, positions.stop * 8)))
    assert checked == len(envelope) * 8


async def test_bit_flips_at_every_chunk_boundary_and_tag_of_a_multi_chunk_envelope_are_rejected() -> None:
    scene = Scene(os.urandom(2 * MIN_CHUNK_SIZE + 500))
    envelope = await scene.seal()
    chunk_regions = {name: span for name, span in regions(envelope).items() if name.startswith("chunk")}
    assert len(chunk_regions) == 3
    for name, span in chunk_regions.items():
        edges = [*range(span.start, span.start + 32), *range(span.stop - 48, span.stop), *span[::251]]
        bits = (byte * 8 + bit for byte in sorted(set(edges)) for bit in range(8))
        await assert_rejected(scene, envelope, name, bits)


async def test_truncation_at_every_length_is_rejected() -> None:
    scene = Scene(b"short note")
    envelope = await scene.seal()
    head_length = len(split_envelope(envelope)[0])
    for length in range(len(envelope)):
        with pytest.raises(EnvelopeError) as raised:
            await scene.open(envelope[:length])
        if length >= head_length:
            assert isinstance(raised.value, Truncated), length


async def test_trailing_bytes_after_the_signature_are_rejected() -> None:
    scene = Scene(b"note")
    envelope = await scene.seal()
    with pytest.raises(MalformedEnvelope):
        await scene.open(envelope + b"\x00")


def chunks_of(envelope: bytes) -> tuple[bytes, list[bytes], bytes]:
    spans = regions(envelope)
    head = envelope[: spans["chunk 0"].start]
    chunks = [envelope[span.start : span.stop] for name, span in spans.items() if name.startswith("chunk")]
    return head, chunks, envelope[spans["signature"].start :]


async def test_reordered_duplicated_dropped_and_extra_chunks_are_rejected() -> None:
    scene = Scene(os.urandom(3 * MIN_CHUNK_SIZE + 10))
    envelope = await scene.seal()
    head, chunks, signature = chunks_of(envelope)
    assert len(chunks) == 4
    attempts = {
        "swap 0 and 1": [chunks[1], chunks[0], *chunks[2:]],
        "duplicate 0": [chunks[0], chunks[0], *chunks[2:]],
        "drop 1": [chunks[0], *chunks[2:]],
        "drop last": chunks[:3],
        "extra chunk": [*chunks[:3], chunks[2], chunks[3]],
        "full chunk as last": [*chunks[:2], chunks[2]],
    }
    for name, body in attempts.items():
        with pytest.raises((ChunkTampered, Truncated, MalformedEnvelope)) as raised:
            await scene.open(head + b"".join(body) + signature)
        assert isinstance(raised.value, (ChunkTampered, Truncated)) or name == "extra chunk", name


async def test_chunks_from_another_envelope_with_the_same_key_are_rejected() -> None:
    """Even a body sealed under the same content key fails when spliced under another header."""
    scene = Scene(os.urandom(MIN_CHUNK_SIZE))
    secrets = EnvelopeSecrets.random()
    first = await scene.seal(secrets)
    scene.content = os.urandom(MIN_CHUNK_SIZE)
    second = await scene.seal(EnvelopeSecrets(secrets.content_key, os.urandom(16).hex(), secrets.nonce_prefix))
    head, _, _ = chunks_of(first)
    _, chunks, signature = chunks_of(second)
    with pytest.raises(ChunkTampered):
        await scene.open(head + b"".join(chunks) + signature)


async def test_stanzas_swapped_between_positions_or_envelopes_are_rejected() -> None:
    scene = Scene(b"note")
    first, second = await scene.seal(), await scene.seal()
    spans_first, spans_second = regions(first), regions(second)
    s0, s1 = spans_first["stanza 0"], spans_first["stanza 1"]
    reordered = first[: s0.start] + first[s1.start : s1.stop] + first[s0.start : s0.stop] + first[s1.stop :]
    with pytest.raises(HeaderTampered):
        await scene.open(reordered)

    mine = spans_second["stanza 0"]
    transplanted = first[: s0.start] + second[mine.start : mine.stop] + first[s0.stop :]
    with pytest.raises(UnwrapFailed):
        await scene.open(transplanted)


async def test_a_relay_readdressing_a_stanza_to_another_device_gets_nothing_opened() -> None:
    scene = Scene(b"note")
    envelope = await scene.seal()
    third = device()
    s1 = regions(envelope)["stanza 1"]
    readdressed = envelope[: s1.start] + bytes.fromhex(third.device_id) + envelope[s1.start + 16 :]
    keys_of_third = DeviceKeys(third.device_id, {scene.other.encryption_key_id: third.encryption_key})
    with pytest.raises(UnwrapFailed):
        await scene.open(readdressed, keys_of_third)
    with pytest.raises(HeaderTampered):
        await scene.open(readdressed)


async def test_a_wrong_recipient_key_or_sender_key_is_rejected() -> None:
    scene = Scene(b"note")
    envelope = await scene.seal()
    impostor = device()
    wrong_private = DeviceKeys(scene.me.device_id, {scene.me.encryption_key_id: impostor.encryption_key})
    with pytest.raises(UnwrapFailed):
        await scene.open(envelope, wrong_private)
    with pytest.raises(BadSignature):
        await open_bytes(envelope, scene.me.opening_keys(), impostor.identity_key)


async def test_a_co_recipient_rewriting_the_senders_stanzas_breaks_the_signature() -> None:
    """A co-recipient can recompute the header MAC, but not the signature over the sealed stanzas."""
    scene = Scene(b"note")
    envelope = await scene.seal()
    head_bytes, body = split_envelope(envelope)
    head = decode_head(head_bytes)
    content_key = unlock(head, scene.other.opening_keys()).content_key
    intruder = device()
    stanzas = (head.stanzas[0], wrap_stanza(content_key, head.header, to(intruder), hpke_wrap))
    mac = header_mac(derive(content_key, head.header.envelope_id).header_mac_key,
                     Head(head.header, stanzas, b"").mac_input())
    rewritten = Head(head.header, stanzas, mac).encode() + body
    with pytest.raises(BadSignature):
        await scene.open(rewritten)
    with pytest.raises(BadSignature):
        await open_bytes(rewritten, intruder.opening_keys(), scene.sender.identity_key)

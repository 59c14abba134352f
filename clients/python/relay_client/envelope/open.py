"""Opening: envelope bytes in, manifest and content out, streaming in constant memory.

    envelope = await read_envelope(pieces)          # the head only; no key needed
    identity = directory_key(envelope.sender_device_id)
    opened = await envelope.unlock(my_keys, identity)
    opened.manifest                                  # provisional, like every content piece
    async for piece in opened.content(): ...         # each piece's tag verified before it is handed out
    # the loop ends normally only once the last chunk and the sender's signature verified

Every piece (and the manifest) is *provisional* until ``content()`` is exhausted without an
error: a co-recipient knows the content key and could have forged chunks, which only the
signature at the very end exposes. Write pieces somewhere temporary and commit them only after
the loop ends (``open_file`` does exactly that); on any EnvelopeError, discard them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relay_client.envelope.errors import BadSignature, ChunkTampered, MalformedEnvelope, MalformedManifest
from relay_client.envelope.format import (
    COUNT,
    FIXED_HEADER_LENGTH,
    MAC_LENGTH,
    PREAMBLE_LENGTH,
    SIGNATURE_LENGTH,
    STANZA_PREFIX_LENGTH,
    STANZA_SUFFIX_LENGTH,
    TAG_LENGTH,
    Head,
    check_key_id_length,
    check_preamble,
    check_stanza_count,
    decode_fixed_header,
    decode_head,
)
from relay_client.envelope.keys import DeviceKeys
from relay_client.envelope.manifest import LENGTH_PREFIX, Manifest, parse_frame_length
from relay_client.envelope.schedule import PayloadDigest, chunk_nonce, signature_message
from relay_client.envelope.streams import ByteReader, iterate_bytes, read_file, write_file
from relay_client.envelope.unlock import Unlocked, unlock


class OpenedEnvelope:
    """An envelope this device unlocked. ``manifest`` and the pieces of ``content()`` are
    provisional until ``content()`` ends without an error; ``authentic`` is True only then."""

    def __init__(self, head: Head, unlocked: Unlocked, sender_key: Ed25519PublicKey, reader: ByteReader) -> None:
        self.head = head
        self.key_id = unlocked.key_id
        self.addressed_by_sender = unlocked.stanza_index < head.header.sealed_stanza_count
        self.authentic = False
        self.manifest: Manifest
        self._unlocked = unlocked
        self._sender_key = sender_key
        self._reader = reader
        self._chunks = self._verified_chunks()
        self._leftover = b""
        self._started = False

    @property
    def envelope_id(self) -> str:
        return self.head.header.envelope_id

    @property
    def sender_device_id(self) -> str:
        return self.head.header.sender_device_id

    async def content(self) -> AsyncIterator[bytes]:
        """The content after the manifest, chunk by chunk, each piece released only after its
        tag verified. Ends normally only after the final chunk and the signature verified;
        otherwise raises an EnvelopeError, and everything yielded so far must be discarded."""
        if self._started:
            raise RuntimeError("an envelope's content streams only once")
        self._started = True
        if self._leftover:
            yield self._leftover
            self._leftover = b""
        async for piece in self._chunks:
            yield piece

    async def _read_manifest(self) -> None:
        length = self.head.header.plaintext_length
        if length < LENGTH_PREFIX.size:
            raise MalformedManifest("the plaintext is too short to hold a manifest")
        buffer = bytearray()
        await self._fill(buffer, LENGTH_PREFIX.size)
        end = LENGTH_PREFIX.size + parse_frame_length(bytes(buffer[: LENGTH_PREFIX.size]), length)
        await self._fill(buffer, end)
        self.manifest = Manifest.decode(bytes(buffer[LENGTH_PREFIX.size : end]))
        self._leftover = bytes(buffer[end:])

    async def _fill(self, buffer: bytearray, size: int) -> None:
        while len(buffer) < size:
            buffer += await anext(self._chunks)

    async def _verified_chunks(self) -> AsyncIterator[bytes]:
        header = self.head.header
        aead = AESGCM(self._unlocked.keys.payload_key)
        digest = PayloadDigest(header.digest)
        count = header.chunk_count
        for index in range(count):
            sealed = await self._reader.read_exactly(header.chunk_length(index) + TAG_LENGTH, what=f"chunk {index}")
            digest.update(sealed)
            try:
                plain = aead.decrypt(chunk_nonce(header.nonce_prefix, index, index == count - 1), sealed,
                                     header.digest)
            except InvalidTag:
                raise ChunkTampered(f"chunk {index} of {count} does not verify") from None
            yield plain
        signature = await self._reader.read_exactly(SIGNATURE_LENGTH, what="the signature")
        if not await self._reader.at_end():
            raise MalformedEnvelope("bytes follow the signature")
        message = signature_message(header.digest, self.head.sealed_stanzas_digest(), digest.value)
        try:
            self._sender_key.verify(signature, message)
        except InvalidSignature:
            raise BadSignature("the sender's signature does not verify") from None
        self.authentic = True


class EnvelopeReader:
    """An envelope whose head was read: routing facts and the sender's device id, no plaintext."""

    def __init__(self, head: Head, reader: ByteReader) -> None:
        self.head = head
        self._reader = reader
        self._unlocked = False

    @property
    def sender_device_id(self) -> str:
        """Whose identity key ``unlock`` needs: look it up in the key directory."""
        return self.head.header.sender_device_id

    async def unlock(self, device: DeviceKeys, sender_key: Ed25519PublicKey) -> OpenedEnvelope:
        """Unwrap this device's stanza, check the header, and read the (provisional) manifest.
        ``sender_key`` is the identity key of ``sender_device_id`` from the key directory."""
        if self._unlocked:
            raise RuntimeError("an envelope is unlocked only once")
        self._unlocked = True
        opened = OpenedEnvelope(self.head, unlock(self.head, device), sender_key, self._reader)
        await opened._read_manifest()
        return opened


async def read_envelope(source: AsyncIterable[bytes]) -> EnvelopeReader:
    """Read and check the head of the envelope ``source`` streams (at most MAX_HEAD_LENGTH bytes)."""
    reader = ByteReader(source)
    preamble = await reader.read_exactly(PREAMBLE_LENGTH, what="the fixed header")
    check_preamble(preamble)
    fixed = preamble + await reader.read_exactly(FIXED_HEADER_LENGTH - PREAMBLE_LENGTH, what="the fixed header")
    header = decode_fixed_header(fixed)
    count_bytes = await reader.read_exactly(COUNT.size, what="the stanza section")
    (count,) = COUNT.unpack(count_bytes)
    check_stanza_count(header, count)
    parts = [fixed, count_bytes]
    for index in range(count):
        start = await reader.read_exactly(STANZA_PREFIX_LENGTH, what=f"stanza {index}")
        check_key_id_length(start[-1])
        parts += [start, await reader.read_exactly(start[-1] + STANZA_SUFFIX_LENGTH, what=f"stanza {index}")]
    parts.append(await reader.read_exactly(MAC_LENGTH, what="the header MAC"))
    return EnvelopeReader(decode_head(b"".join(parts)), reader)


@dataclass(frozen=True)
class OpenedMessage:
    """A whole envelope opened and verified, held in memory."""

    envelope_id: str
    sender_device_id: str
    manifest: Manifest
    content: bytes
    key_id: str
    addressed_by_sender: bool


async def open_bytes(data: bytes, device: DeviceKeys, sender_key: Ed25519PublicKey) -> OpenedMessage:
    """Open a small envelope held in memory; returns only once everything verified."""
    opened = await (await read_envelope(iterate_bytes(data))).unlock(device, sender_key)
    content = b"".join([piece async for piece in opened.content()])
    return OpenedMessage(opened.envelope_id, opened.sender_device_id, opened.manifest, content, opened.key_id,
                         opened.addressed_by_sender)


async def open_file(source: str | os.PathLike[str], target: str | os.PathLike[str], device: DeviceKeys,
                    sender_key: Ed25519PublicKey) -> OpenedEnvelope:
    """Open the envelope in file ``source`` into file ``target``. The content goes to a
    temporary file that becomes ``target`` only after the signature verified; on any error it
    is deleted and ``target`` is left as it was."""
    opened = await (await read_envelope(read_file(source))).unlock(device, sender_key)
    await write_file(opened.content(), target)
    return opened

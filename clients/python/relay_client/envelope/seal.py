"""Sealing: manifest + content in, envelope bytes out, streaming in constant memory.

    sealed = seal(manifest, pieces, content_length, sender=me, recipients=[...])
    sealed.head            # fixed header + stanzas + MAC, known before any content is read
    async for piece in sealed: ...   # the head, then each chunk, then the signature
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relay_client.envelope.format import (
    CONTENT_KEY_LENGTH,
    DEFAULT_CHUNK_SIZE,
    ENC_LENGTH,
    ID_LENGTH,
    MAX_CHUNK_SIZE,
    MAX_PLAINTEXT_LENGTH,
    MAX_STANZAS,
    MIN_CHUNK_SIZE,
    NONCE_PREFIX_LENGTH,
    WRAPPED_KEY_LENGTH,
    FixedHeader,
    Head,
    Stanza,
)
from relay_client.envelope.keys import Recipient, SenderIdentity
from relay_client.envelope.manifest import Manifest
from relay_client.envelope.schedule import (
    ContentKeys,
    KeyWrap,
    PayloadDigest,
    chunk_nonce,
    derive,
    header_mac,
    hpke_wrap,
    signature_message,
    wrap_info,
)
from relay_client.envelope.streams import iterate_bytes, read_file, write_file


@dataclass(frozen=True)
class EnvelopeSecrets:
    """The random values of one envelope. Only tests fix them, to reproduce the test vectors
    in docs/envelope.md; everything else lets ``seal`` draw them."""

    content_key: bytes
    envelope_id: str
    nonce_prefix: bytes

    @classmethod
    def random(cls) -> EnvelopeSecrets:
        return cls(os.urandom(CONTENT_KEY_LENGTH), os.urandom(ID_LENGTH).hex(), os.urandom(NONCE_PREFIX_LENGTH))


def wrap_stanza(content_key: bytes, header: FixedHeader, recipient: Recipient, wrap: KeyWrap) -> Stanza:
    """The HPKE stanza that gives ``recipient`` this envelope's content key."""
    try:
        wrapped = wrap(content_key, recipient.public_key, wrap_info(header.digest, recipient.device_id,
                                                                    recipient.key_id))
    except ValueError:
        raise ValueError(f"the key {recipient.key_id!r} of device {recipient.device_id} is unusable") from None
    if len(wrapped) != ENC_LENGTH + WRAPPED_KEY_LENGTH:
        raise ValueError("the key wrap returned an unexpected length")
    return Stanza(recipient.device_id, recipient.key_id, wrapped[:ENC_LENGTH], wrapped[ENC_LENGTH:])


def check_recipients(recipients: Sequence[Recipient], existing: Sequence[str] = ()) -> None:
    device_ids = [*existing, *(recipient.device_id for recipient in recipients)]
    if not recipients:
        raise ValueError("an envelope needs at least one recipient")
    if len(device_ids) > MAX_STANZAS:
        raise ValueError(f"an envelope has at most {MAX_STANZAS} recipients")
    if len(set(device_ids)) != len(device_ids):
        raise ValueError("a device appears twice among the recipients")


class SealedEnvelope:
    """An envelope being sealed: ``head`` at once, the body as it streams out. Iterating it
    yields head then body; either way the content is read once, so iterate only once."""

    def __init__(self, head: Head, keys: ContentKeys, sender: SenderIdentity,
                 plaintext: AsyncIterable[bytes]) -> None:
        self._head = head
        self._keys = keys
        self._sender = sender
        self._plaintext = plaintext
        self._started = False
        self.head = head.encode()
        self.envelope_id = head.header.envelope_id
        self.length = len(self.head) + head.header.body_length

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        async for piece in self.body():
            yield piece

    async def body(self) -> AsyncIterator[bytes]:
        """Each chunk (ciphertext || tag) as it is sealed, then the sender's signature."""
        if self._started:
            raise RuntimeError("an envelope's body streams only once")
        self._started = True
        header = self._head.header
        aead = AESGCM(self._keys.payload_key)
        digest = PayloadDigest(header.digest)
        last = header.chunk_count - 1
        index = 0
        async for chunk in _chunks(self._plaintext, header.chunk_size, header.plaintext_length):
            sealed = aead.encrypt(chunk_nonce(header.nonce_prefix, index, index == last), chunk, header.digest)
            digest.update(sealed)
            yield sealed
            index += 1
        message = signature_message(header.digest, self._head.sealed_stanzas_digest(), digest.value)
        yield self._sender.signing_key.sign(message)


def seal(
    manifest: Manifest, content: AsyncIterable[bytes], content_length: int, *, sender: SenderIdentity,
    recipients: Sequence[Recipient], chunk_size: int = DEFAULT_CHUNK_SIZE, secrets: EnvelopeSecrets | None = None,
    wrap: KeyWrap = hpke_wrap,
) -> SealedEnvelope:
    """Seal ``content`` (exactly ``content_length`` bytes, in pieces of any size) for
    ``recipients``. Arguments are checked now (ValueError); the content is read as the body
    streams, and a source yielding a different length fails the stream with ValueError."""
    check_recipients(recipients)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be within {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
    frame = manifest.frame()
    plaintext_length = len(frame) + content_length
    if content_length < 0 or plaintext_length > MAX_PLAINTEXT_LENGTH:
        raise ValueError(f"the content length must be within 0..{MAX_PLAINTEXT_LENGTH - len(frame)}")
    secrets = secrets or EnvelopeSecrets.random()
    if len(secrets.content_key) != CONTENT_KEY_LENGTH or len(secrets.nonce_prefix) != NONCE_PREFIX_LENGTH:
        raise ValueError("a content key is 32 bytes and a nonce prefix 7")
    keys = derive(secrets.content_key, secrets.envelope_id)
    header = FixedHeader(secrets.envelope_id, sender.device_id, chunk_size, plaintext_length, len(recipients),
                         secrets.nonce_prefix, keys.commitment)
    stanzas = tuple(wrap_stanza(secrets.content_key, header, recipient, wrap) for recipient in recipients)
    unsigned = Head(header, stanzas, b"")
    head = Head(header, stanzas, header_mac(keys.header_mac_key, unsigned.mac_input()))
    return SealedEnvelope(head, keys, sender, _framed(frame, content, content_length))


async def seal_bytes(manifest: Manifest, content: bytes, *, sender: SenderIdentity, recipients: Sequence[Recipient],
                     chunk_size: int = DEFAULT_CHUNK_SIZE, secrets: EnvelopeSecrets | None = None,
                     wrap: KeyWrap = hpke_wrap) -> bytes:
    """A whole envelope for a small message held in memory."""
    sealed = seal(manifest, iterate_bytes(content), len(content), sender=sender, recipients=recipients,
                  chunk_size=chunk_size, secrets=secrets, wrap=wrap)
    return b"".join([piece async for piece in sealed])


async def seal_file(manifest: Manifest, source: str | os.PathLike[str], target: str | os.PathLike[str], *,
                    sender: SenderIdentity, recipients: Sequence[Recipient],
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> SealedEnvelope:
    """Seal the file ``source`` into the file ``target`` (written whole or not at all)."""
    sealed = seal(manifest, read_file(source), Path(source).stat().st_size, sender=sender, recipients=recipients,
                  chunk_size=chunk_size)
    await write_file(sealed, target)
    return sealed


async def _framed(frame: bytes, content: AsyncIterable[bytes], content_length: int) -> AsyncIterator[bytes]:
    yield frame
    received = 0
    async for piece in content:
        received += len(piece)
        if received > content_length:
            raise ValueError(f"the content is longer than the {content_length} bytes announced")
        yield piece
    if received != content_length:
        raise ValueError(f"the content ended after {received} of the {content_length} bytes announced")


async def _chunks(pieces: AsyncIterable[bytes], chunk_size: int, total: int) -> AsyncIterator[bytes | memoryview]:
    """Re-cut ``pieces`` into chunks of ``chunk_size`` bytes (the last one shorter, or a single
    empty chunk for an empty plaintext) without copying whole chunks found inside a piece."""
    pending = bytearray()
    async for piece in pieces:
        view = memoryview(piece)
        if pending:
            taken = chunk_size - len(pending)
            pending += view[:taken]
            view = view[taken:]
            if len(pending) < chunk_size:
                continue
            yield bytes(pending)
            pending.clear()
        while len(view) >= chunk_size:
            yield view[:chunk_size]
            view = view[chunk_size:]
        pending += view
    if pending or total == 0:
        yield bytes(pending)

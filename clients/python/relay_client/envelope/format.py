"""The v1 byte layout (docs/envelope.md, "Layout"): constants, and the head (fixed header +
stanza section) as values that encode to and decode from exact bytes.

    envelope = head || body
    head     = fixed header (91) || stanza count (u16) || stanzas || header MAC (32)
    body     = chunk_0 || ... || chunk_{n-1} || signature (64)

All integers are unsigned big-endian. Decoding raises only MalformedEnvelope,
UnsupportedVersion or Truncated.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from functools import cached_property

from relay_client.envelope.errors import MalformedEnvelope, Truncated, UnsupportedVersion
from relay_client.envelope.keys import KEY_ID

MAGIC = b"RLYE"
VERSION = 1
FIXED_HEADER = struct.Struct(">4sBB16s16sIQH7s32s")
FIXED_HEADER_LENGTH = FIXED_HEADER.size
COUNT = struct.Struct(">H")
ID_LENGTH = 16
NONCE_PREFIX_LENGTH = 7
COMMITMENT_LENGTH = 32
CONTENT_KEY_LENGTH = 32
ENC_LENGTH = 32
WRAPPED_KEY_LENGTH = CONTENT_KEY_LENGTH + 16
MAC_LENGTH = 32
TAG_LENGTH = 16
SIGNATURE_LENGTH = 64

MIN_CHUNK_SIZE = 16 * 1024
MAX_CHUNK_SIZE = 4 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_PLAINTEXT_LENGTH = 1 << 40
MAX_STANZAS = 1000
MAX_KEY_ID_LENGTH = 64
STANZA_PREFIX_LENGTH = ID_LENGTH + 1
STANZA_SUFFIX_LENGTH = ENC_LENGTH + WRAPPED_KEY_LENGTH
MAX_HEAD_LENGTH = (FIXED_HEADER_LENGTH + COUNT.size + MAC_LENGTH
                   + MAX_STANZAS * (STANZA_PREFIX_LENGTH + MAX_KEY_ID_LENGTH + STANZA_SUFFIX_LENGTH))


def chunk_count(plaintext_length: int, chunk_size: int) -> int:
    """n = max(1, ceil(L / S)): an empty payload is one empty final chunk."""
    return max(1, -(-plaintext_length // chunk_size))


@dataclass(frozen=True)
class FixedHeader:
    """The first 91 bytes: everything about the envelope that never changes after sealing."""

    envelope_id: str
    sender_device_id: str
    chunk_size: int
    plaintext_length: int
    sealed_stanza_count: int
    nonce_prefix: bytes
    commitment: bytes

    def encode(self) -> bytes:
        return FIXED_HEADER.pack(
            MAGIC, VERSION, 0, bytes.fromhex(self.envelope_id), bytes.fromhex(self.sender_device_id),
            self.chunk_size, self.plaintext_length, self.sealed_stanza_count, self.nonce_prefix, self.commitment,
        )

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 of the encoded fixed header: the chunks' AAD, HPKE info's anchor, the digest chain's start."""
        return hashlib.sha256(self.encode()).digest()

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.plaintext_length, self.chunk_size)

    def chunk_length(self, index: int) -> int:
        """The plaintext length of chunk ``index``: S for all but the last."""
        if index < self.chunk_count - 1:
            return self.chunk_size
        return self.plaintext_length - (self.chunk_count - 1) * self.chunk_size

    @property
    def body_length(self) -> int:
        return self.plaintext_length + TAG_LENGTH * self.chunk_count + SIGNATURE_LENGTH


@dataclass(frozen=True)
class Stanza:
    """The content key wrapped for one recipient device with HPKE."""

    recipient_device_id: str
    key_id: str
    enc: bytes
    wrapped_key: bytes

    def encode(self) -> bytes:
        key_id = self.key_id.encode("ascii")
        return bytes.fromhex(self.recipient_device_id) + bytes([len(key_id)]) + key_id + self.enc + self.wrapped_key


@dataclass(frozen=True)
class Head:
    """The fixed header, the stanza section and the header MAC."""

    header: FixedHeader
    stanzas: tuple[Stanza, ...]
    mac: bytes

    def mac_input(self) -> bytes:
        """What the header MAC covers: fixed header || stanza count || every stanza."""
        return b"".join([self.header.encode(), COUNT.pack(len(self.stanzas)), *(s.encode() for s in self.stanzas)])

    def encode(self) -> bytes:
        return self.mac_input() + self.mac

    def sealed_stanzas_digest(self) -> bytes:
        """SHA-256 of the stanzas the sender sealed (the first k): the sender's signature covers it."""
        sealed = self.stanzas[: self.header.sealed_stanza_count]
        return hashlib.sha256(b"".join(s.encode() for s in sealed)).digest()

    def stanza_for(self, device_id: str) -> tuple[int, Stanza] | None:
        for index, stanza in enumerate(self.stanzas):
            if stanza.recipient_device_id == device_id:
                return index, stanza
        return None

    @property
    def length(self) -> int:
        return len(self.encode())


PREAMBLE_LENGTH = len(MAGIC) + 1


def check_preamble(data: bytes) -> None:
    """Magic, then version: what tells a v1 envelope from other bytes and from other versions."""
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise MalformedEnvelope("not a Relay envelope (bad magic)")
    if len(data) < PREAMBLE_LENGTH:
        raise Truncated("the envelope ends inside its fixed header")
    if data[len(MAGIC)] != VERSION:
        raise UnsupportedVersion(f"envelope version {data[len(MAGIC)]} is not supported (this reads {VERSION})")


def decode_fixed_header(data: bytes) -> FixedHeader:
    """Decode and check the 91-byte fixed header (``data`` may be longer)."""
    check_preamble(data)
    if len(data) < FIXED_HEADER_LENGTH:
        raise Truncated("the envelope ends inside its fixed header")
    (_, _, flags, envelope_id, sender, chunk_size, length, sealed, prefix, commitment) = FIXED_HEADER.unpack_from(data)
    if flags != 0:
        raise MalformedEnvelope("reserved flags must be zero in v1")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise MalformedEnvelope(f"chunk size {chunk_size} is outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
    if length > MAX_PLAINTEXT_LENGTH:
        raise MalformedEnvelope(f"plaintext length {length} exceeds {MAX_PLAINTEXT_LENGTH}")
    if not 1 <= sealed <= MAX_STANZAS:
        raise MalformedEnvelope(f"sealed stanza count {sealed} is outside 1..{MAX_STANZAS}")
    return FixedHeader(envelope_id.hex(), sender.hex(), chunk_size, length, sealed, prefix, commitment)


def check_stanza_count(header: FixedHeader, count: int) -> None:
    if not header.sealed_stanza_count <= count <= MAX_STANZAS:
        raise MalformedEnvelope(f"stanza count {count} is outside {header.sealed_stanza_count}..{MAX_STANZAS}")


def check_key_id_length(length: int) -> None:
    if not 1 <= length <= MAX_KEY_ID_LENGTH:
        raise MalformedEnvelope(f"key id length {length} is outside 1..{MAX_KEY_ID_LENGTH}")


def head_length(data: bytes) -> int:
    """The length of the head that ``data`` starts with, or Truncated if ``data`` ends inside it."""
    header = decode_fixed_header(data)
    position = FIXED_HEADER_LENGTH + COUNT.size
    if len(data) < position:
        raise Truncated("the envelope ends inside its stanza section")
    (count,) = COUNT.unpack_from(data, FIXED_HEADER_LENGTH)
    check_stanza_count(header, count)
    for _ in range(count):
        if len(data) < position + STANZA_PREFIX_LENGTH:
            raise Truncated("the envelope ends inside a stanza")
        key_id_length = data[position + ID_LENGTH]
        check_key_id_length(key_id_length)
        position += STANZA_PREFIX_LENGTH + key_id_length + STANZA_SUFFIX_LENGTH
    position += MAC_LENGTH
    if len(data) < position:
        raise Truncated("the envelope ends inside its stanza section")
    return position


def decode_head(data: bytes) -> Head:
    """Decode a head that is exactly ``data``; every limit is checked."""
    if head_length(data) != len(data):
        raise MalformedEnvelope("bytes follow the header MAC where the head should end")
    header = decode_fixed_header(data)
    (count,) = COUNT.unpack_from(data, FIXED_HEADER_LENGTH)
    position = FIXED_HEADER_LENGTH + COUNT.size
    stanzas: list[Stanza] = []
    seen: set[str] = set()
    for _ in range(count):
        recipient = data[position : position + ID_LENGTH].hex()
        key_id_length = data[position + ID_LENGTH]
        position += STANZA_PREFIX_LENGTH
        raw_key_id = data[position : position + key_id_length]
        position += key_id_length
        key_id = raw_key_id.decode("latin-1")
        if not KEY_ID.fullmatch(key_id):
            raise MalformedEnvelope("a key id holds characters outside A-Z a-z 0-9 _ -")
        if recipient in seen:
            raise MalformedEnvelope("two stanzas address the same device")
        seen.add(recipient)
        enc = data[position : position + ENC_LENGTH]
        wrapped = data[position + ENC_LENGTH : position + STANZA_SUFFIX_LENGTH]
        position += STANZA_SUFFIX_LENGTH
        stanzas.append(Stanza(recipient, key_id, enc, wrapped))
    return Head(header, tuple(stanzas), data[position : position + MAC_LENGTH])


def split_envelope(data: bytes) -> tuple[bytes, bytes]:
    """Split a whole envelope into its head and its body (chunks and signature)."""
    length = head_length(data)
    return data[:length], data[length:]

"""The routing view of a sealed envelope: what the relay reads from an envelope's head without
any key (docs/envelope.md, "Routing view") -- envelope id, sender and recipient device ids,
the recipients' key ids, and sizes. Nothing else in an envelope is readable without a key.

This module only duplicates the v1 layout constants. The code that opens envelopes lives with
the clients (relay_client) and is never imported by the server (tests/test_import_boundary.py).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from relay.errors import InvalidRequest

MAGIC = b"RLYE"
VERSION = 1
FIXED_HEADER = struct.Struct(">4sBB16s16sIQH7s32s")
COUNT = struct.Struct(">H")
ID_LENGTH = 16
STANZA_PREFIX_LENGTH = ID_LENGTH + 1
STANZA_SUFFIX_LENGTH = 32 + 48
MAC_LENGTH = 32
TAG_LENGTH = 16
SIGNATURE_LENGTH = 64
MIN_CHUNK_SIZE = 16 * 1024
MAX_CHUNK_SIZE = 4 * 1024 * 1024
MAX_PLAINTEXT_LENGTH = 1 << 40
MAX_STANZAS = 1000
MAX_KEY_ID_LENGTH = 64
MAX_HEAD_LENGTH = (FIXED_HEADER.size + COUNT.size + MAC_LENGTH
                   + MAX_STANZAS * (STANZA_PREFIX_LENGTH + MAX_KEY_ID_LENGTH + STANZA_SUFFIX_LENGTH))
_KEY_ID = re.compile(rb"[A-Za-z0-9_-]{1,64}")


class MalformedEnvelope(InvalidRequest):
    code = "malformed_envelope"


class UnsupportedEnvelopeVersion(InvalidRequest):
    code = "unsupported_envelope_version"


@dataclass(frozen=True)
class RoutedRecipient:
    device_id: str
    key_id: str


@dataclass(frozen=True)
class RoutingView:
    envelope_id: str
    sender_device_id: str
    chunk_size: int
    plaintext_length: int
    recipients: tuple[RoutedRecipient, ...]
    sealed_recipient_count: int
    head_length: int

    @property
    def chunk_count(self) -> int:
        return max(1, -(-self.plaintext_length // self.chunk_size))

    @property
    def body_length(self) -> int:
        """Bytes after the head: every chunk with its tag, then the signature."""
        return self.plaintext_length + TAG_LENGTH * self.chunk_count + SIGNATURE_LENGTH

    @property
    def total_length(self) -> int:
        return self.head_length + self.body_length


def _malformed(reason: str) -> MalformedEnvelope:
    return MalformedEnvelope(f"not a well-formed sealed envelope: {reason}")


def read_routing_view(data: bytes) -> RoutingView:
    """The routing view of the envelope ``data`` starts with (its head; anything after the head
    is not looked at). Raises MalformedEnvelope or UnsupportedEnvelopeVersion."""
    if data[: len(MAGIC)] != MAGIC:
        raise _malformed("bad magic")
    if len(data) > len(MAGIC) and data[len(MAGIC)] != VERSION:
        raise UnsupportedEnvelopeVersion(f"envelope version {data[len(MAGIC)]} is not supported")
    if len(data) < FIXED_HEADER.size + COUNT.size:
        raise _malformed("it ends inside its header")
    _, _, flags, envelope_id, sender, chunk_size, length, sealed, _, _ = FIXED_HEADER.unpack_from(data)
    (count,) = COUNT.unpack_from(data, FIXED_HEADER.size)
    if flags != 0:
        raise _malformed("reserved flags are set")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise _malformed("chunk size out of range")
    if length > MAX_PLAINTEXT_LENGTH:
        raise _malformed("plaintext length out of range")
    if not 1 <= sealed <= count <= MAX_STANZAS:
        raise _malformed("stanza count out of range")
    position = FIXED_HEADER.size + COUNT.size
    recipients: list[RoutedRecipient] = []
    for _ in range(count):
        if len(data) < position + STANZA_PREFIX_LENGTH:
            raise _malformed("it ends inside a stanza")
        device_id = data[position : position + ID_LENGTH].hex()
        key_id_length = data[position + ID_LENGTH]
        key_id = data[position + STANZA_PREFIX_LENGTH : position + STANZA_PREFIX_LENGTH + key_id_length]
        if not 1 <= key_id_length <= MAX_KEY_ID_LENGTH or not _KEY_ID.fullmatch(key_id):
            raise _malformed("bad key id")
        recipients.append(RoutedRecipient(device_id, key_id.decode("ascii")))
        position += STANZA_PREFIX_LENGTH + key_id_length + STANZA_SUFFIX_LENGTH
    position += MAC_LENGTH
    if len(data) < position:
        raise _malformed("it ends inside its stanza section")
    if len({recipient.device_id for recipient in recipients}) != count:
        raise _malformed("two stanzas address the same device")
    return RoutingView(envelope_id.hex(), sender.hex(), chunk_size, length, tuple(recipients), sealed, position)

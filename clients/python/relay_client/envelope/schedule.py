"""Every key, nonce, label and digest derived while sealing or opening (docs/envelope.md,
"Key schedule"). Primitives come from ``cryptography``; nothing here is home-made."""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PAYLOAD_KEY_INFO = b"relay/v1/payload-key"
HEADER_MAC_KEY_INFO = b"relay/v1/header-mac-key"
COMMITMENT_INFO = b"relay/v1/key-commitment"
WRAP_LABEL = b"relay/v1/wrap"
SIGNATURE_LABEL = b"relay/v1/envelope-signature"

HPKE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
KeyWrap = Callable[[bytes, X25519PublicKey, bytes], bytes]
"""(content key, recipient public key, info) -> enc || ciphertext."""

_NONCE_SUFFIX = struct.Struct(">IB")


def _hkdf(content_key: bytes, envelope_id: str, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=bytes.fromhex(envelope_id), info=info).derive(content_key)


@dataclass(frozen=True)
class ContentKeys:
    """The three values derived from one envelope's content key."""

    payload_key: bytes
    header_mac_key: bytes
    commitment: bytes


def derive(content_key: bytes, envelope_id: str) -> ContentKeys:
    """HKDF-SHA256(ikm=content key, salt=envelope id, info=label), 32 bytes each."""
    return ContentKeys(
        _hkdf(content_key, envelope_id, PAYLOAD_KEY_INFO),
        _hkdf(content_key, envelope_id, HEADER_MAC_KEY_INFO),
        _hkdf(content_key, envelope_id, COMMITMENT_INFO),
    )


def wrap_info(header_digest: bytes, device_id: str, key_id: str) -> bytes:
    """HPKE info: label || 0x00 || SHA-256(fixed header) || device id || u8 len || key id."""
    raw_key_id = key_id.encode("ascii")
    return WRAP_LABEL + b"\x00" + header_digest + bytes.fromhex(device_id) + bytes([len(raw_key_id)]) + raw_key_id


def hpke_wrap(content_key: bytes, public_key: X25519PublicKey, info: bytes) -> bytes:
    """RFC 9180 base mode, single shot, empty AAD; returns enc (32) || ciphertext (48)."""
    return HPKE.encrypt(content_key, public_key, info=info)


def hpke_unwrap(stanza_bytes: bytes, private_key: X25519PrivateKey, info: bytes) -> bytes:
    """Raises cryptography.exceptions.InvalidTag when the stanza does not open."""
    return HPKE.decrypt(stanza_bytes, private_key, info=info)


def header_mac(mac_key: bytes, mac_input: bytes) -> bytes:
    return hmac.new(mac_key, mac_input, hashlib.sha256).digest()


def chunk_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    """nonce_prefix (7) || u32 chunk index || 0x01 for the last chunk, else 0x00."""
    return prefix + _NONCE_SUFFIX.pack(index, 1 if last else 0)


class PayloadDigest:
    """The digest chain over the body's chunks: D_0 = SHA-256(fixed header),
    D_{i+1} = SHA-256(D_i || SHA-256(chunk_i)), each chunk as on the wire (ciphertext || tag)."""

    def __init__(self, header_digest: bytes) -> None:
        self._value = header_digest

    def update(self, chunk: bytes) -> None:
        self._value = hashlib.sha256(self._value + hashlib.sha256(chunk).digest()).digest()

    @property
    def value(self) -> bytes:
        return self._value


def signature_message(header_digest: bytes, sealed_stanzas_digest: bytes, payload_digest: bytes) -> bytes:
    """What the sender's Ed25519 key signs: label || 0x00 || three SHA-256 digests (116 bytes)."""
    return SIGNATURE_LABEL + b"\x00" + header_digest + sealed_stanzas_digest + payload_digest

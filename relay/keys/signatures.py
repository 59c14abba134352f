"""The signed public keys a device publishes, and how the relay checks them (docs/keys.md).

A device's Ed25519 identity key signs each X25519 key it publishes. The signed message is
domain-separated and versioned, so a signature made for one purpose never verifies for
another:

    b"relay/v1/encryption-key" || 0x00 || key_id (ASCII) || 0x00 || x25519_public_key (32 bytes)
    b"relay/v1/one-time-key"   || 0x00 || key_id (ASCII) || 0x00 || x25519_public_key (32 bytes)

Keys and signatures travel as unpadded base64url. Verification uses libsodium (pynacl),
which also refuses non-canonical signatures and small-order identity keys.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from relay.errors import InvalidRequest

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_KEY_ID = re.compile(KEY_ID_PATTERN)


class KeyPurpose(Enum):
    """What an X25519 key is for; the value is the domain separator its signature covers."""

    ENCRYPTION = b"relay/v1/encryption-key"
    ONE_TIME = b"relay/v1/one-time-key"


@dataclass(frozen=True)
class SignedKey:
    """An X25519 public key, its id (chosen by the device, never reused) and its signature."""

    key_id: str
    public_key: bytes
    signature: bytes


def signed_message(purpose: KeyPurpose, key_id: str, public_key: bytes) -> bytes:
    """The exact bytes the identity key signs for ``public_key``."""
    if not _KEY_ID.fullmatch(key_id):
        raise InvalidRequest("key ids are 1 to 64 characters of A-Z a-z 0-9 _ -", code="invalid_key_id")
    return purpose.value + b"\x00" + key_id.encode("ascii") + b"\x00" + public_key


def encode(raw: bytes) -> str:
    """Unpadded base64url, the encoding of every key and signature in the API."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(text: str, *, length: int, field: str) -> bytes:
    """Decode unpadded base64url of exactly ``length`` bytes, or InvalidRequest("malformed_key")."""
    raw = None
    if _BASE64URL.fullmatch(text) and len(text) % 4 != 1:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or encode(raw) != text:
        raise InvalidRequest(f"{field} is not unpadded base64url", code="malformed_key", details={"field": field})
    if len(raw) != length:
        raise InvalidRequest(
            f"{field} must be {length} bytes, got {len(raw)}", code="malformed_key", details={"field": field}
        )
    return raw


def check_x25519(public_key: bytes, *, field: str) -> None:
    """Refuse a low-order X25519 point: any key agreement with it gives the all-zero secret."""
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(public_key))
    except ValueError:
        raise InvalidRequest(f"{field} is a weak X25519 key", code="weak_key", details={"field": field}) from None


def verify(identity_key: bytes, purpose: KeyPurpose, key: SignedKey, *, field: str) -> None:
    """Check ``key`` is a usable X25519 key signed by ``identity_key``, or InvalidRequest."""
    message = signed_message(purpose, key.key_id, key.public_key)
    check_x25519(key.public_key, field=field)
    try:
        VerifyKey(identity_key).verify(message, key.signature)
    except (BadSignatureError, ValueError):
        raise InvalidRequest(
            f"the signature of {field} does not verify under the identity key", code="bad_signature",
            details={"field": field},
        ) from None

"""The keys an envelope involves: the recipients' published X25519 keys, the sender's Ed25519
identity key, and the private keys a device opens envelopes with.

A device's identity key signs every X25519 key it publishes (docs/keys.md):

    b"relay/v1/encryption-key" || 0x00 || key_id (ASCII) || 0x00 || x25519_public_key
    b"relay/v1/one-time-key"   || 0x00 || key_id (ASCII) || 0x00 || x25519_public_key

``Recipient.from_directory`` checks that signature before anything is sealed to a key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

DEVICE_ID = re.compile(r"[0-9a-f]{32}")
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class UntrustedKey(ValueError):
    """A published key whose signature does not verify under the device's identity key."""


class KeyPurpose(Enum):
    """What a published X25519 key is for; the value is the domain its signature covers."""

    ENCRYPTION = b"relay/v1/encryption-key"
    ONE_TIME = b"relay/v1/one-time-key"


def check_device_id(device_id: str) -> bytes:
    """The 16 bytes of a Relay device id (32 lowercase hex characters), or ValueError."""
    if not isinstance(device_id, str) or not DEVICE_ID.fullmatch(device_id):
        raise ValueError("a device id is 32 lowercase hex characters")
    return bytes.fromhex(device_id)


def check_key_id(key_id: str) -> bytes:
    """The ASCII bytes of a key id (1 to 64 of A-Z a-z 0-9 _ -), or ValueError."""
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
        raise ValueError("a key id is 1 to 64 characters of A-Z a-z 0-9 _ -")
    return key_id.encode("ascii")


def raw_public(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class PublishedKey:
    """An X25519 public key as the key directory lists it: id, raw key, identity-key signature."""

    key_id: str
    public_key: bytes
    signature: bytes


def signed_message(purpose: KeyPurpose, key_id: str, public_key: bytes) -> bytes:
    return purpose.value + b"\x00" + check_key_id(key_id) + b"\x00" + public_key


def publish(identity: Ed25519PrivateKey, purpose: KeyPurpose, key_id: str, key: X25519PrivateKey) -> PublishedKey:
    """Sign ``key``'s public half with the device's identity key, ready for the directory."""
    public_key = raw_public(key.public_key())
    return PublishedKey(key_id, public_key, identity.sign(signed_message(purpose, key_id, public_key)))


@dataclass(frozen=True)
class Recipient:
    """One recipient device and the X25519 key its stanza is sealed to."""

    device_id: str
    key_id: str
    public_key: X25519PublicKey

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        check_key_id(self.key_id)

    @classmethod
    def from_directory(
        cls, device_id: str, identity_key: bytes, encryption_key: PublishedKey,
        one_time_key: PublishedKey | None = None,
    ) -> Recipient:
        """The recipient for a directory entry: its one-time key when one was claimed, else its
        signed encryption key. Raises UntrustedKey unless the chosen key's signature verifies."""
        purpose, chosen = (KeyPurpose.ONE_TIME, one_time_key) if one_time_key else (
            KeyPurpose.ENCRYPTION, encryption_key)
        try:
            Ed25519PublicKey.from_public_bytes(identity_key).verify(
                chosen.signature, signed_message(purpose, chosen.key_id, chosen.public_key))
            public_key = X25519PublicKey.from_public_bytes(chosen.public_key)
        except (InvalidSignature, ValueError):
            raise UntrustedKey(f"key {chosen.key_id!r} of device {device_id} is not signed by its identity key") \
                from None
        return cls(device_id, chosen.key_id, public_key)


@dataclass(frozen=True)
class SenderIdentity:
    """The sealing device: its id and the Ed25519 identity key that signs its envelopes."""

    device_id: str
    signing_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        check_device_id(self.device_id)


@dataclass(frozen=True)
class DeviceKeys:
    """What a device opens envelopes with: its id and its X25519 private keys by key id (the
    signed encryption key, and the one-time keys it has not yet used up)."""

    device_id: str
    private_keys: Mapping[str, X25519PrivateKey]

    def __post_init__(self) -> None:
        check_device_id(self.device_id)


@dataclass
class DeviceKeyring:
    """A device's own key material: its Ed25519 identity key, its signed X25519 encryption key,
    and the one-time keys it has published and not yet used."""

    device_id: str
    identity: Ed25519PrivateKey
    encryption_key_id: str
    encryption_key: X25519PrivateKey
    one_time_keys: dict[str, X25519PrivateKey]

    @classmethod
    def generate(cls, device_id: str, *, encryption_key_id: str = "enc-1", one_time_keys: int = 0) -> DeviceKeyring:
        check_device_id(device_id)
        return cls(device_id, Ed25519PrivateKey.generate(), check_key_id(encryption_key_id).decode(),
                   X25519PrivateKey.generate(), {f"otk-{n}": X25519PrivateKey.generate() for n in range(one_time_keys)})

    @property
    def identity_key(self) -> Ed25519PublicKey:
        return self.identity.public_key()

    @property
    def sender(self) -> SenderIdentity:
        return SenderIdentity(self.device_id, self.identity)

    def published_encryption_key(self) -> PublishedKey:
        return publish(self.identity, KeyPurpose.ENCRYPTION, self.encryption_key_id, self.encryption_key)

    def published_one_time_keys(self) -> list[PublishedKey]:
        return [publish(self.identity, KeyPurpose.ONE_TIME, key_id, key) for key_id, key in self.one_time_keys.items()]

    def opening_keys(self) -> DeviceKeys:
        """The private keys envelopes addressed to this device open with."""
        return DeviceKeys(self.device_id, {self.encryption_key_id: self.encryption_key, **self.one_time_keys})

    def forget_one_time_key(self, key_id: str) -> None:
        """Drop a one-time key once an envelope sealed to it was opened (forward secrecy)."""
        self.one_time_keys.pop(key_id, None)

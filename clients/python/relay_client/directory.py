"""The key directory as a sender and a recipient must read it (docs/keys.md): every signed key
is verified under the device's identity key (strictly, with libsodium, as the relay does),
small-order X25519 keys are refused, and a device id whose identity key changes is refused."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import VerifyKey

from relay_client.encoding import unb64url
from relay_client.envelope.keys import (
    KeyPurpose,
    PublishedKey,
    Recipient,
    signed_message,
)
from relay_client.errors import UntrustedDevice
from relay_client.http import RelayHttp

FINGERPRINT_DOMAIN = b"relay/v1/fingerprint"


def fingerprint(identity_key: bytes) -> str:
    """Twelve groups of five digits that people compare out of band (docs/keys.md)."""
    digest = hashlib.sha512(FINGERPRINT_DOMAIN + b"\x00" + identity_key).digest()
    return " ".join(f"{int.from_bytes(digest[i:i + 5], 'big') % 100000:05d}" for i in range(0, 60, 5))


def _published(view: dict[str, Any]) -> PublishedKey:
    return PublishedKey(view["key_id"], unb64url(view["public_key"], length=32),
                        unb64url(view["signature"], length=64))


@dataclass(frozen=True)
class DirectoryDevice:
    """One device as the key directory (or a conversation's ``recipients``) lists it."""

    id: str
    owner_type: str
    owner_id: str
    identity_key: bytes
    encryption_key: PublishedKey
    fingerprint: str

    @classmethod
    def from_json(cls, view: dict[str, Any]) -> DirectoryDevice:
        try:
            return cls(view["id"], view.get("owner_type", "user"), view["owner_id"],
                       unb64url(view["identity_key"], length=32), _published(view["encryption_key"]),
                       view.get("fingerprint", ""))
        except (KeyError, TypeError, ValueError) as error:
            raise UntrustedDevice(f"a directory entry is malformed: {error}") from None


def verify_signed_key(device: DirectoryDevice, purpose: KeyPurpose, key: PublishedKey) -> None:
    """Raise UntrustedDevice unless ``key`` is signed by ``device``'s identity key and usable."""
    try:
        VerifyKey(device.identity_key).verify(signed_message(purpose, key.key_id, key.public_key), key.signature)
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(key.public_key))
    except (BadSignatureError, CryptoError, ValueError):
        raise UntrustedDevice(f"key {key.key_id!r} of device {device.id} does not verify") from None


class Directory:
    """Reads the directory and remembers each device's identity key for the life of the client."""

    def __init__(self, http: RelayHttp) -> None:
        self._http = http
        self._known: dict[str, DirectoryDevice] = {}

    def pin(self, device: DirectoryDevice) -> None:
        """Remember ``device``'s identity key and owner; UntrustedDevice if either differs from
        what was seen before under the same device id."""
        known = self._known.get(device.id, device)
        if (known.identity_key, known.owner_id) != (device.identity_key, device.owner_id):
            raise UntrustedDevice(f"device {device.id} now shows a different identity key or owner")
        if device.fingerprint and device.fingerprint != fingerprint(device.identity_key):
            raise UntrustedDevice(f"device {device.id}'s fingerprint does not match its identity key")
        self._known[device.id] = device

    def recipient(self, device: DirectoryDevice, one_time_key: PublishedKey | None = None) -> Recipient:
        """The sealing recipient for ``device``, after every check a sender must make."""
        self.pin(device)
        purpose, key = (KeyPurpose.ONE_TIME, one_time_key) if one_time_key else (
            KeyPurpose.ENCRYPTION, device.encryption_key)
        verify_signed_key(device, purpose, key)
        return Recipient.from_directory(device.id, device.identity_key, device.encryption_key, one_time_key)

    async def device(self, device_id: str) -> DirectoryDevice:
        found = DirectoryDevice.from_json(await self._http.call("GET", f"/api/v1/directory/devices/{device_id}"))
        self.pin(found)
        return found

    async def user_devices(self, user_id: str) -> list[DirectoryDevice]:
        answer = await self._http.call("GET", f"/api/v1/directory/users/{user_id}/devices")
        return [DirectoryDevice.from_json(view) for view in answer["devices"]]

    async def claim(self, device_id: str) -> Recipient:
        """Claim one of the device's one-time keys (or fall back to its signed encryption key)."""
        answer = await self._http.call("POST", f"/api/v1/directory/devices/{device_id}/one-time-key")
        device = DirectoryDevice.from_json(answer["device"])
        one_time = answer.get("one_time_key")
        return self.recipient(device, _published(one_time) if one_time else None)

    async def sender_key(self, device_id: str, user_id: str | None = None) -> Ed25519PublicKey:
        """The identity key that signed an envelope from ``device_id`` (owned by ``user_id`` when given)."""
        device = self._known.get(device_id) or await self.device(device_id)
        if user_id is not None and device.owner_id != user_id:
            raise UntrustedDevice(f"device {device_id} does not belong to user {user_id}")
        return Ed25519PublicKey.from_public_bytes(device.identity_key)

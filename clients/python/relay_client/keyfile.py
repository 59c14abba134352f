"""The device's private keys on disk: one JSON file, created with mode 0600 (its folder 0700
when the SDK creates it), replaced atomically, and refused when group or others can read it.

Private keys never leave this file and the process; the relay only ever sees public halves.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from relay_client.encoding import b64url, unb64url
from relay_client.envelope.keys import (
    DeviceKeyring,
    KeyPurpose,
    PublishedKey,
    publish,
    raw_public,
)
from relay_client.errors import InsecureKeyFile, KeyFileCorrupt, NoDevice

FORMAT = "relay-device-keys/v1"


def new_key_id(prefix: str) -> str:
    """A fresh random key id; random ids are never reused, even across a lost key file."""
    return f"{prefix}-{secrets.token_hex(8)}"


def _raw_private(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


@dataclass
class DeviceSecrets:
    """A device's private keys, and its id once the relay registered it."""

    identity: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    encryption_key_id: str = field(default_factory=lambda: new_key_id("ek"))
    encryption_key: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    one_time_keys: dict[str, X25519PrivateKey] = field(default_factory=dict)
    device_id: str | None = None

    @property
    def identity_key(self) -> bytes:
        return raw_public(self.identity.public_key())

    def published_encryption_key(self) -> PublishedKey:
        return publish(self.identity, KeyPurpose.ENCRYPTION, self.encryption_key_id, self.encryption_key)

    def new_one_time_keys(self, count: int) -> list[PublishedKey]:
        """Generate ``count`` one-time keys, keep their private halves, return the signed public ones."""
        published = []
        for _ in range(count):
            key_id, key = new_key_id("otk"), X25519PrivateKey.generate()
            self.one_time_keys[key_id] = key
            published.append(publish(self.identity, KeyPurpose.ONE_TIME, key_id, key))
        return published

    def published_one_time_keys(self) -> list[PublishedKey]:
        return [publish(self.identity, KeyPurpose.ONE_TIME, key_id, key) for key_id, key in self.one_time_keys.items()]

    def keyring(self) -> DeviceKeyring:
        """The relay_client.envelope view of these keys (sealing and opening)."""
        if self.device_id is None:
            raise NoDevice("the device is not registered yet")
        return DeviceKeyring(self.device_id, self.identity, self.encryption_key_id, self.encryption_key,
                             self.one_time_keys)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "device_id": self.device_id,
            "identity_key": b64url(_raw_private(self.identity)),
            "encryption_key": {"key_id": self.encryption_key_id, "private_key": b64url(_raw_private(self.encryption_key))},
            "one_time_keys": {key_id: b64url(_raw_private(key)) for key_id, key in self.one_time_keys.items()},
        }

    @classmethod
    def from_json(cls, document: Any) -> DeviceSecrets:
        try:
            if document["format"] != FORMAT:
                raise KeyFileCorrupt(f"unsupported key file format {document['format']!r}")
            encryption = document["encryption_key"]
            return cls(
                identity=Ed25519PrivateKey.from_private_bytes(unb64url(document["identity_key"], length=32)),
                encryption_key_id=encryption["key_id"],
                encryption_key=X25519PrivateKey.from_private_bytes(unb64url(encryption["private_key"], length=32)),
                one_time_keys={key_id: X25519PrivateKey.from_private_bytes(unb64url(value, length=32))
                               for key_id, value in document["one_time_keys"].items()},
                device_id=document["device_id"],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise KeyFileCorrupt(f"the key file is not a Relay device key file: {error}") from None


class KeyFile:
    """Where a device's keys live between runs."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists() or self.path.is_symlink()

    def load(self) -> DeviceSecrets:
        """Read the keys; raises InsecureKeyFile if group or others may read or write the file."""
        descriptor = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(descriptor, "rb") as handle:
            self._check_private(os.fstat(handle.fileno()))
            data = handle.read()
        try:
            document = json.loads(data)
        except ValueError:
            raise KeyFileCorrupt("the key file is not JSON") from None
        return DeviceSecrets.from_json(document)

    def save(self, device: DeviceSecrets) -> None:
        """Replace the file atomically with ``device``'s keys (mode 0600)."""
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o700, parents=True)
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(json.dumps(device.to_json(), sort_keys=True).encode())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        _sync_directory(self.path.parent)

    def wipe(self) -> None:
        """Overwrite the keys with zeros and delete the file (a revoked device)."""
        try:
            descriptor = os.open(self.path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return
        with os.fdopen(descriptor, "r+b") as handle:
            handle.write(b"\x00" * os.fstat(handle.fileno()).st_size)
            handle.flush()
            os.fsync(handle.fileno())
        self.path.unlink()
        _sync_directory(self.path.parent)

    def _check_private(self, status: os.stat_result) -> None:
        if not stat.S_ISREG(status.st_mode):
            raise InsecureKeyFile(f"{self.path} is not a regular file")
        if status.st_mode & 0o077:
            raise InsecureKeyFile(f"{self.path} is accessible by group or others (mode "
                                  f"{stat.S_IMODE(status.st_mode):04o}); make it 0600 (chmod 600)")
        if hasattr(os, "geteuid") and status.st_uid != os.geteuid():
            raise InsecureKeyFile(f"{self.path} belongs to another user")


def _sync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

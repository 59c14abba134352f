"""The server's own keys, kept in one file (mode 0600) outside the database.

- Key-encryption keys (KEKs): AES-256-GCM keys with ids. Secrets the server must keep (TOTP
  seeds now, invitation contacts later) are sealed under the active KEK with the id in the
  blob, so ``relay keys rotate`` adds a key without downtime: nodes reload the file when it
  changes and can still open blobs sealed under any key the file holds.
- The audit key: an HMAC key that chains the audit log, so rows cannot be forged or
  re-chained by someone who can write the database but cannot read this file.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relay.errors import RelayError, SettingsError

FORMAT = 1
BLOB_VERSION = 1
KEY_ID_BYTES = 8
NONCE_BYTES = 12


class SecretUnreadable(RelayError):
    """A sealed secret cannot be opened: unknown key id, or altered bytes."""


@dataclass(frozen=True)
class Kek:
    id: str
    key: bytes
    created_at: str


class Keyring:
    def __init__(self, path: Path, keks: list[Kek], active: str, audit_key: bytes, version: tuple[int, int]) -> None:
        self.path = path
        self._keks = {kek.id: kek for kek in keks}
        self._active = active
        self.audit_key = audit_key
        self._version = version

    @classmethod
    def open(cls, path: Path, now: datetime) -> Keyring:
        """Load the key file, creating it (0600, in a 0700 directory) on first run."""
        if not path.exists():
            _write(path, _document([_new_kek(now)], audit_key=secrets.token_bytes(32)))
        return cls._load(path)

    @classmethod
    def _load(cls, path: Path) -> Keyring:
        try:
            info = path.stat()
            document = json.loads(path.read_text())
        except OSError as error:
            raise SettingsError(f"RELAY_KEY_FILE: cannot read {path}: {error.strerror}") from None
        except ValueError:
            raise SettingsError(f"RELAY_KEY_FILE: {path} is not a Relay key file") from None
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise SettingsError(f"RELAY_KEY_FILE: {path} is readable by others; chmod 600 {path}")
        if document.get("format") != FORMAT:
            raise SettingsError(f"RELAY_KEY_FILE: {path} has an unknown format")
        keks = [Kek(item["id"], base64.b64decode(item["key"]), item["created_at"]) for item in document["keks"]]
        return cls(path, keks, document["active"], base64.b64decode(document["audit_key"]), _version(info))

    @property
    def active_id(self) -> str:
        return self._active

    @property
    def key_ids(self) -> list[str]:
        return list(self._keks)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        """Encrypt under the active KEK; ``context`` (e.g. "users.totp_secret:<id>") is bound as AAD."""
        self._refresh()
        kek = self._keks[self._active]
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(kek.key).encrypt(nonce, plaintext, context.encode())
        return bytes([BLOB_VERSION]) + bytes.fromhex(kek.id) + nonce + sealed

    def open_sealed(self, blob: bytes, context: str) -> bytes:
        kek_id = self.key_id_of(blob)
        if kek_id not in self._keks:
            self._refresh(force=True)
        kek = self._keks.get(kek_id)
        if kek is None:
            raise SecretUnreadable(f"no key-encryption key {kek_id} in {self.path}")
        start = 1 + KEY_ID_BYTES
        nonce, sealed = blob[start : start + NONCE_BYTES], blob[start + NONCE_BYTES :]
        try:
            return AESGCM(kek.key).decrypt(nonce, sealed, context.encode())
        except InvalidTag:
            raise SecretUnreadable("sealed secret failed authentication") from None

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        if len(blob) < 1 + KEY_ID_BYTES + NONCE_BYTES + 16 or blob[0] != BLOB_VERSION:
            raise SecretUnreadable("not a sealed secret")
        return blob[1 : 1 + KEY_ID_BYTES].hex()

    def add_key(self, now: datetime) -> str:
        """Add a new KEK and make it the active one; earlier keys still open what they sealed."""
        kek = _new_kek(now)
        self._refresh()
        keks = [*self._keks.values(), kek]
        self._save(keks, kek.id)
        return kek.id

    def retire_keys(self, keep: set[str]) -> list[str]:
        """Drop every KEK except the active one and those in ``keep``; returns the dropped ids."""
        self._refresh()
        keep = keep | {self._active}
        dropped = [kid for kid in self._keks if kid not in keep]
        self._save([kek for kek in self._keks.values() if kek.id in keep], self._active)
        return dropped

    def _save(self, keks: list[Kek], active: str) -> None:
        _write(self.path, _document(keks, audit_key=self.audit_key, active=active))
        self._keks = {kek.id: kek for kek in keks}
        self._active = active
        self._version = _version(self.path.stat())

    def _refresh(self, force: bool = False) -> None:
        """Pick up a rotation made by another process (``relay keys rotate`` on a live cluster)."""
        try:
            version = _version(self.path.stat())
        except OSError:
            return
        if force or version != self._version:
            fresh = Keyring._load(self.path)
            self._keks, self._active, self._version = fresh._keks, fresh._active, fresh._version


def _version(info: os.stat_result) -> tuple[int, int]:
    """Every save replaces the file, so a new inode (or mtime) means another process rotated."""
    return info.st_ino, info.st_mtime_ns


def _new_kek(now: datetime) -> Kek:
    return Kek(secrets.token_bytes(KEY_ID_BYTES).hex(), AESGCM.generate_key(bit_length=256), now.isoformat())


def _document(keks: list[Kek], *, audit_key: bytes, active: str | None = None) -> dict[str, object]:
    return {
        "format": FORMAT,
        "active": active or keks[-1].id,
        "keks": [
            {"id": kek.id, "key": base64.b64encode(kek.key).decode(), "created_at": kek.created_at} for kek in keks
        ],
        "audit_key": base64.b64encode(audit_key).decode(),
    }


def _write(path: Path, document: dict[str, object]) -> None:
    """Write atomically with mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)

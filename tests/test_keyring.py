"""The server's key file: private from its first byte, and sealed secrets that open only intact,
in their own context, under a key the file holds."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from relay.errors import SettingsError
from relay.keys.keyring import Keyring, SecretUnreadable
from tests.support.clock import ManualClock

CONTEXT = "users.totp_secret:0123456789abcdef0123456789abcdef"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "keys.json"
    keyring = Keyring.open(path, ManualClock().now())
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert [name for name in os.listdir(path.parent)] == ["keys.json"]
    again = Keyring.open(path, ManualClock().now())
    assert again.key_ids == keyring.key_ids == [keyring.active_id]
    assert again.audit_key == keyring.audit_key
    assert again.open_sealed(keyring.seal(b"seed", CONTEXT), CONTEXT) == b"seed"


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "keys.json"
    Keyring.open(path, ManualClock().now())
    path.chmod(loose)
    with pytest.raises(SettingsError, match="chmod 600"):
        Keyring.open(path, ManualClock().now())


def test_a_file_that_is_not_a_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("not json")
    path.chmod(0o600)
    with pytest.raises(SettingsError, match="not a Relay key file"):
        Keyring.open(path, ManualClock().now())


def test_a_sealed_secret_opens_only_intact_and_in_its_context(tmp_path: Path) -> None:
    keyring = Keyring.open(tmp_path / "keys.json", ManualClock().now())
    blob = keyring.seal(b"totp seed", CONTEXT)
    assert b"totp seed" not in blob
    assert keyring.open_sealed(blob, CONTEXT) == b"totp seed"
    for position in (0, 5, 15, len(blob) - 20, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        with pytest.raises(SecretUnreadable):
            keyring.open_sealed(bytes(tampered), CONTEXT)
    with pytest.raises(SecretUnreadable):
        keyring.open_sealed(blob[:20], CONTEXT)
    with pytest.raises(SecretUnreadable):
        keyring.open_sealed(blob, "users.totp_secret:another-user")


def test_a_secret_under_an_unknown_key_id_is_refused(tmp_path: Path) -> None:
    keyring = Keyring.open(tmp_path / "keys.json", ManualClock().now())
    stranger = Keyring.open(tmp_path / "other" / "keys.json", ManualClock().now())
    with pytest.raises(SecretUnreadable, match="no key-encryption key"):
        keyring.open_sealed(stranger.seal(b"seed", CONTEXT), CONTEXT)


def test_another_process_follows_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    writer = Keyring.open(path, ManualClock().now())
    old_blob = writer.seal(b"seed", CONTEXT)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    reader = Keyring.open(path, ManualClock().now())
    old_id = writer.active_id

    new_id = writer.add_key(ManualClock().now())
    assert mode(path) == 0o600
    fresh_blob = reader.seal(b"fresh", CONTEXT)
    assert Keyring.key_id_of(fresh_blob) == new_id != old_id
    assert reader.open_sealed(old_blob, CONTEXT) == b"seed"
    assert writer.open_sealed(fresh_blob, CONTEXT) == b"fresh"

    assert writer.retire_keys(set()) == [old_id]
    restarted = Keyring.open(path, ManualClock().now())
    assert restarted.key_ids == [new_id] and json.loads(path.read_text())["active"] == new_id
    assert restarted.open_sealed(fresh_blob, CONTEXT) == b"fresh"
    with pytest.raises(SecretUnreadable, match="no key-encryption key"):
        restarted.open_sealed(old_blob, CONTEXT)

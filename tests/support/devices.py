"""A device's side of the key directory, written from docs/keys.md as a client would (it does
not import relay.keys): key pairs, signed uploads, registration and device-bound sessions."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from tests.support.harness import Account, Relay
from tests.support.integration import AdapterKey, token_form

ENCRYPTION_KEY_DOMAIN = b"relay/v1/encryption-key"
ONE_TIME_KEY_DOMAIN = b"relay/v1/one-time-key"
FINGERPRINT_DOMAIN = b"relay/v1/fingerprint"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signed_message(domain: bytes, key_id: str, public_key: bytes) -> bytes:
    return domain + b"\x00" + key_id.encode() + b"\x00" + public_key


def fingerprint(identity_key: bytes) -> str:
    digest = hashlib.sha512(FINGERPRINT_DOMAIN + b"\x00" + identity_key).digest()
    return " ".join(f"{int.from_bytes(digest[i:i + 5], 'big') % 100000:05d}" for i in range(0, 60, 5))


def verify_signed_key(identity_key: str, domain: bytes, key: dict[str, str]) -> None:
    """Check a key served by the directory as a sender must (raises nacl's BadSignatureError)."""
    message = signed_message(domain, key["key_id"], unb64url(key["public_key"]))
    VerifyKey(unb64url(identity_key)).verify(message, unb64url(key["signature"]))


@dataclass
class DeviceKeys:
    """A device's private keys; only public halves and signatures ever leave it."""

    identity: SigningKey = field(default_factory=SigningKey.generate)
    encryption: PrivateKey = field(default_factory=PrivateKey.generate)
    encryption_key_id: str = field(default_factory=lambda: f"ek-{secrets.token_hex(4)}")
    one_time: dict[str, PrivateKey] = field(default_factory=dict)

    @property
    def identity_key(self) -> str:
        return b64url(bytes(self.identity.verify_key))

    def sign(self, domain: bytes, key_id: str, public_key: bytes) -> dict[str, str]:
        signature = self.identity.sign(signed_message(domain, key_id, public_key)).signature
        return {"key_id": key_id, "public_key": b64url(public_key), "signature": b64url(signature)}

    def encryption_upload(self) -> dict[str, str]:
        return self.sign(ENCRYPTION_KEY_DOMAIN, self.encryption_key_id, bytes(self.encryption.public_key))

    def rotate(self) -> dict[str, str]:
        """A fresh encryption key pair under a new key id, as the PUT .../encryption-key body."""
        self.encryption, self.encryption_key_id = PrivateKey.generate(), f"ek-{secrets.token_hex(4)}"
        return self.encryption_upload()

    def one_time_batch(self, count: int) -> list[dict[str, str]]:
        batch = []
        for _ in range(count):
            key_id, private = f"otk-{secrets.token_hex(6)}", PrivateKey.generate()
            self.one_time[key_id] = private
            batch.append(self.sign(ONE_TIME_KEY_DOMAIN, key_id, bytes(private.public_key)))
        return batch

    def registration(self, name: str = "ward tablet", one_time_keys: int = 0) -> dict[str, Any]:
        """A valid POST /api/v1/devices body."""
        return {"name": name, "identity_key": self.identity_key, "encryption_key": self.encryption_upload(),
                "one_time_keys": self.one_time_batch(one_time_keys)}


@dataclass
class RegisteredDevice:
    id: str
    keys: DeviceKeys
    view: dict[str, Any]


async def register_device(relay: Relay, token: str, *, one_time_keys: int = 0, name: str = "ward tablet",
                          keys: DeviceKeys | None = None) -> RegisteredDevice:
    keys = keys or DeviceKeys()
    response = await relay.call("POST", "/api/v1/devices", token=token,
                                json=keys.registration(name, one_time_keys=one_time_keys))
    assert response.status == 201, await response.text()
    view = await response.json()
    return RegisteredDevice(view["id"], keys, view)


async def device_session(relay: Relay, account: Account, *, one_time_keys: int = 0) -> tuple[RegisteredDevice, str]:
    """Register a device for ``account`` and log in on it; returns the device and its session token."""
    device = await register_device(relay, account.token, one_time_keys=one_time_keys)
    return device, await relay.login(account, device_id=device.id)


async def integration_principal(relay: Relay, admin: Account, name: str = "emr-adapter") -> tuple[str, str]:
    """Register an EMR adapter as an integration principal (by ``admin``); returns (integration id, access token)."""
    key = AdapterKey.generate()
    response = await relay.call("POST", "/api/v1/integrations", token=admin.token,
                                json={"name": name, "public_key_pem": key.public_pem})
    assert response.status == 201, await response.text()
    integration = await response.json()
    assertion = key.assertion(integration["id"], integration["token_url"], relay.clock.now())
    response = await relay.call("POST", "/api/v1/auth/token", data=token_form(assertion))
    assert response.status == 200, await response.text()
    return integration["id"], (await response.json())["access_token"]

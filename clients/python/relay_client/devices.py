"""This device on the relay: registered once with its signed public keys, reused on every
later run from the key file, topped up with one-time keys, wiped when revoked."""

from __future__ import annotations

from typing import Any

from relay_client.encoding import b64url
from relay_client.envelope.keys import DeviceKeyring, PublishedKey
from relay_client.errors import DeviceRevoked, NoDevice, RelayApiError
from relay_client.http import RelayHttp
from relay_client.keyfile import DeviceSecrets, KeyFile


def key_json(key: PublishedKey) -> dict[str, str]:
    return {"key_id": key.key_id, "public_key": b64url(key.public_key), "signature": b64url(key.signature)}


class Devices:
    """Owns the key file. ``secrets`` is this device's keys once ``ensure`` ran."""

    def __init__(self, http: RelayHttp, key_file: KeyFile) -> None:
        self._http = http
        self.key_file = key_file
        self.secrets: DeviceSecrets | None = None

    @property
    def device_id(self) -> str:
        if self.secrets is None or self.secrets.device_id is None:
            raise NoDevice("register or load this device first")
        return self.secrets.device_id

    async def ensure(self, name: str, *, one_time_keys: int = 10) -> DeviceSecrets:
        """The device of the key file when it is still active on the relay; otherwise a new
        device registered now (keys written to the file before the relay sees them). A device
        that was revoked meanwhile is wiped and DeviceRevoked raised: call again to register anew."""
        if self.key_file.exists():
            secrets = self.key_file.load()
            if secrets.device_id is not None:
                if not await self._is_active(secrets):
                    self.key_file.wipe()
                    raise DeviceRevoked(f"device {secrets.device_id} is no longer active; its keys were wiped")
                self.secrets = secrets
                return secrets
        else:
            secrets = DeviceSecrets()
            secrets.new_one_time_keys(one_time_keys)
            self.key_file.save(secrets)
        secrets.device_id = await self._register(secrets, name)
        self.key_file.save(secrets)
        self.secrets = secrets
        return secrets

    async def upload_one_time_keys(self, count: int) -> int:
        """Publish ``count`` new one-time keys (saved locally first); returns how many the relay holds."""
        secrets = self._require()
        published = secrets.new_one_time_keys(count)
        self.key_file.save(secrets)
        answer = await self._http.call("POST", f"/api/v1/devices/{self.device_id}/one-time-keys",
                                       json={"one_time_keys": [key_json(key) for key in published]})
        return int(answer["count"])

    async def one_time_key_count(self) -> tuple[int, int]:
        """(unclaimed one-time keys on the relay, the most it holds)."""
        answer = await self._http.call("GET", f"/api/v1/devices/{self.device_id}/one-time-keys/count")
        return int(answer["count"]), int(answer["max"])

    async def replenish(self, *, below: int = 5, up_to: int = 20) -> int:
        """Upload one-time keys when fewer than ``below`` remain, up to ``up_to``; returns the count."""
        count, most = await self.one_time_key_count()
        if count >= below:
            return count
        return await self.upload_one_time_keys(min(up_to, most) - count)

    def forget_one_time_key(self, key_id: str) -> None:
        """Delete a used one-time key for good (forward secrecy), on disk too."""
        secrets = self._require()
        if secrets.one_time_keys.pop(key_id, None) is not None:
            self.key_file.save(secrets)

    async def active(self) -> list[dict[str, Any]]:
        """The caller's active devices as the relay lists them."""
        return list((await self._http.call("GET", "/api/v1/devices"))["devices"])

    async def revoke(self, device_id: str) -> None:
        """Revoke one of the caller's devices (a lost phone); its keys are removed from the directory."""
        await self._http.call("DELETE", f"/api/v1/devices/{device_id}", expect=(204,))

    def keyring(self) -> DeviceKeyring:
        """This device's keys for sealing and opening envelopes."""
        return self._require().keyring()

    def wipe(self) -> None:
        """Delete this device's keys from disk and memory."""
        self.key_file.wipe()
        self.secrets = None

    def _require(self) -> DeviceSecrets:
        if self.secrets is None or self.secrets.device_id is None:
            raise NoDevice("register or load this device first")
        return self.secrets

    async def _is_active(self, secrets: DeviceSecrets) -> bool:
        return any(device["id"] == secrets.device_id and device["identity_key"] == b64url(secrets.identity_key)
                   for device in await self.active())

    async def _register(self, secrets: DeviceSecrets, name: str) -> str:
        body = {"name": name, "identity_key": b64url(secrets.identity_key),
                "encryption_key": key_json(secrets.published_encryption_key()),
                "one_time_keys": [key_json(key) for key in secrets.published_one_time_keys()]}
        try:
            return str((await self._http.call("POST", "/api/v1/devices", json=body, expect=(201,)))["id"])
        except RelayApiError as error:
            if error.code != "identity_key_in_use":
                raise
        # A registration that went through before the device id was saved: adopt it.
        for device in await self.active():
            if device["identity_key"] == body["identity_key"]:
                return str(device["id"])
        raise RelayApiError(409, "identity_key_in_use", "another device of the tenant holds this identity key")

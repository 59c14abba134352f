"""REST endpoints for the caller's devices and the key directory (formats: docs/keys.md)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from relay.auth.principal import ALL_ROLES, PrincipalType, Role
from relay.http.endpoint import Call, RouteTable
from relay.http.schema import RequestBody, ResponseBody
from relay.keys.devices import Device
from relay.keys.signatures import KEY_ID_PATTERN, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SignedKey, decode, encode
from relay.runtime_key import RUNTIME

routes = RouteTable("devices")
DIRECTORY_READERS = frozenset({Role.CLINICIAN, Role.ADMIN, Role.INTEGRATION})

KeyText = Field(min_length=1, max_length=128, description="Unpadded base64url")
KeyId = Field(pattern=KEY_ID_PATTERN, description="Chosen by the device; never reused by it")


class SignedKeyUpload(RequestBody):
    key_id: str = KeyId
    public_key: str = KeyText
    signature: str = KeyText

    def decoded(self, field: str) -> SignedKey:
        return SignedKey(
            self.key_id,
            decode(self.public_key, length=PUBLIC_KEY_BYTES, field=f"{field}.public_key"),
            decode(self.signature, length=SIGNATURE_BYTES, field=f"{field}.signature"),
        )


def _decoded_batch(keys: list[SignedKeyUpload]) -> list[SignedKey]:
    return [key.decoded(f"one_time_keys.{index}") for index, key in enumerate(keys)]


class NewDevice(RequestBody):
    name: str = Field(min_length=1, max_length=100, description="A label for its owner, e.g. 'ward tablet'")
    identity_key: str = KeyText
    encryption_key: SignedKeyUpload
    one_time_keys: list[SignedKeyUpload] = Field(default_factory=list)


class OneTimeKeyUpload(RequestBody):
    one_time_keys: list[SignedKeyUpload] = Field(min_length=1)


class SignedKeyView(ResponseBody):
    key_id: str
    public_key: str
    signature: str

    @classmethod
    def of(cls, key: SignedKey) -> SignedKeyView:
        return cls(key_id=key.key_id, public_key=encode(key.public_key), signature=encode(key.signature))


class DeviceView(ResponseBody):
    id: str
    name: str
    owner_type: PrincipalType
    owner_id: str
    identity_key: str
    fingerprint: str = Field(description="Twelve groups of five digits to compare out of band")
    encryption_key: SignedKeyView
    created_at: datetime
    rotated_at: datetime | None

    @classmethod
    def of(cls, device: Device) -> DeviceView:
        return cls(id=device.id, name=device.name, owner_type=device.owner_type, owner_id=device.owner_id,
                   identity_key=encode(device.identity_key), fingerprint=device.fingerprint,
                   encryption_key=SignedKeyView.of(device.encryption_key), created_at=device.created_at,
                   rotated_at=device.rotated_at)


class DeviceList(ResponseBody):
    devices: list[DeviceView]


class OneTimeKeyCount(ResponseBody):
    count: int
    max: int


class ClaimedKeys(ResponseBody):
    device: DeviceView
    one_time_key: SignedKeyView | None = Field(
        description="Handed out once; null when none are left: use the device's signed encryption key"
    )


@routes.post("/api/v1/devices", summary="Register one of the caller's devices with its signed public keys",
             roles=ALL_ROLES, body=NewDevice, response=DeviceView, status=201)
async def register_device(call: Call[NewDevice]) -> DeviceView:
    body = call.body
    device = await call.request.app[RUNTIME].devices.register(
        call.caller, name=body.name,
        identity_key=decode(body.identity_key, length=PUBLIC_KEY_BYTES, field="identity_key"),
        encryption_key=body.encryption_key.decoded("encryption_key"),
        one_time_key_batch=_decoded_batch(body.one_time_keys),
    )
    return DeviceView.of(device)


@routes.get("/api/v1/devices", summary="The caller's active devices", roles=ALL_ROLES, response=DeviceList)
async def list_devices(call: Call) -> DeviceList:
    devices = await call.request.app[RUNTIME].devices.list_own(call.caller)
    return DeviceList(devices=[DeviceView.of(device) for device in devices])


@routes.delete("/api/v1/devices/{device_id}", summary="Revoke a device (its owner, or an admin): keys removed, "
               "sessions ended, sockets disconnected", roles=ALL_ROLES, status=204)
async def revoke_device(call: Call) -> None:
    await call.request.app[RUNTIME].devices.revoke(call.caller, call.param("device_id"))


@routes.put("/api/v1/devices/{device_id}/encryption-key", summary="Replace the device's signed encryption key",
            roles=ALL_ROLES, body=SignedKeyUpload, response=DeviceView)
async def rotate_encryption_key(call: Call[SignedKeyUpload]) -> DeviceView:
    device = await call.request.app[RUNTIME].devices.rotate_encryption_key(
        call.caller, call.param("device_id"), call.body.decoded("encryption_key")
    )
    return DeviceView.of(device)


@routes.post("/api/v1/devices/{device_id}/one-time-keys", summary="Upload more signed one-time keys",
             roles=ALL_ROLES, body=OneTimeKeyUpload, response=OneTimeKeyCount)
async def upload_one_time_keys(call: Call[OneTimeKeyUpload]) -> OneTimeKeyCount:
    service = call.request.app[RUNTIME].devices
    keys = _decoded_batch(call.body.one_time_keys)
    count = await service.add_one_time_keys(call.caller, call.param("device_id"), keys)
    return OneTimeKeyCount(count=count, max=service.max_one_time_keys)


@routes.get("/api/v1/devices/{device_id}/one-time-keys/count", summary="How many unclaimed one-time keys remain",
            roles=ALL_ROLES, response=OneTimeKeyCount)
async def count_one_time_keys(call: Call) -> OneTimeKeyCount:
    service = call.request.app[RUNTIME].devices
    count = await service.count_one_time_keys(call.caller, call.param("device_id"))
    return OneTimeKeyCount(count=count, max=service.max_one_time_keys)


@routes.get("/api/v1/directory/users/{user_id}/devices", summary="A user's active devices and their public keys",
            roles=DIRECTORY_READERS, response=DeviceList)
async def user_devices(call: Call) -> DeviceList:
    devices = await call.request.app[RUNTIME].devices.owner_devices(
        call.caller, PrincipalType.USER, call.param("user_id")
    )
    return DeviceList(devices=[DeviceView.of(device) for device in devices])


@routes.get("/api/v1/directory/integrations/{integration_id}/devices",
            summary="An integration's (EMR adapter's) active devices and their public keys",
            roles=DIRECTORY_READERS, response=DeviceList)
async def integration_devices(call: Call) -> DeviceList:
    devices = await call.request.app[RUNTIME].devices.owner_devices(
        call.caller, PrincipalType.INTEGRATION, call.param("integration_id")
    )
    return DeviceList(devices=[DeviceView.of(device) for device in devices])


@routes.get("/api/v1/directory/devices/{device_id}", summary="One active device's public keys and fingerprint",
            roles=DIRECTORY_READERS, response=DeviceView)
async def directory_device(call: Call) -> DeviceView:
    return DeviceView.of(await call.request.app[RUNTIME].devices.lookup(call.caller, call.param("device_id")))


@routes.post("/api/v1/directory/devices/{device_id}/one-time-key",
             summary="Claim one of the device's one-time keys (each is handed out once)",
             roles=DIRECTORY_READERS, response=ClaimedKeys)
async def claim_one_time_key(call: Call) -> ClaimedKeys:
    claim = await call.request.app[RUNTIME].devices.claim_one_time_key(call.caller, call.param("device_id"))
    key = SignedKeyView.of(claim.one_time_key) if claim.one_time_key else None
    return ClaimedKeys(device=DeviceView.of(claim.device), one_time_key=key)

"""An integration principal (an EMR adapter) on the relay: OAuth 2.0 client credentials with a
signed JWT client assertion (RFC 7523, ``private_key_jwt`` as in SMART Backend Services), its
own device registered once and reused from the key file, and a token bound to that device.

    async with IntegrationClient(url, client_id=..., private_key=load_private_key(path),
                                 key_file="state/device.json") as client:
        await client.login("EMR adapter")    # unbound token, register or reuse the device, bound token
        await client.connect()               # socket.io: blob.available
"""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from relay_client.blobs import Blobs
from relay_client.devices import Devices
from relay_client.directory import Directory
from relay_client.errors import InsecureKeyFile, KeyFileCorrupt, NotLoggedIn
from relay_client.http import RelayHttp, api_error
from relay_client.keyfile import DeviceSecrets, KeyFile
from relay_client.realtime import Realtime

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_PATH = "/api/v1/auth/token"
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
Now = Callable[[], datetime]
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """A PEM private key (EC, RSA or Ed25519) from a file only its owner may read."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode) or status.st_mode & 0o077:
            raise InsecureKeyFile(f"{path} must be a regular file of mode 0600")
        data = handle.read()
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileCorrupt(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyFileCorrupt(f"{path} holds neither an EC, an RSA nor an Ed25519 key")
    return key


def signing_algorithm(key: PrivateKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _EC_ALGORITHMS[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS384"
    return "EdDSA"


@dataclass(frozen=True)
class ClientAssertion:
    """Signs RFC 7523 client assertions: iss = sub = the client id, aud = the token endpoint,
    a fresh jti, and an expiry ``lifetime`` seconds from ``now()`` (servers allow at most 5 minutes)."""

    client_id: str
    private_key: PrivateKey
    now: Now = lambda: datetime.now(UTC)
    lifetime: int = 240
    key_id: str | None = None

    def sign(self, audience: str) -> str:
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience, "jti": secrets.token_hex(16),
                  "exp": int((self.now() + timedelta(seconds=self.lifetime)).timestamp())}
        headers = {"kid": self.key_id} if self.key_id else None
        return jwt.encode(claims, self.private_key, algorithm=signing_algorithm(self.private_key),  # type: ignore[arg-type]
                          headers=headers)

    def form(self, audience: str, *, scope: str | None = None, **extra: str) -> dict[str, str]:
        """The token request's form: client_credentials with a freshly signed assertion."""
        form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.sign(audience)}
        if scope:
            form["scope"] = scope
        return form | extra


class IntegrationAuth:
    """Access tokens for an integration principal: ``token(device_id)`` asks
    ``POST /api/v1/auth/token``; a token the relay ends (``session_expired``) is replaced by a
    new one for the same device, through ``RelayHttp.renew``."""

    def __init__(self, http: RelayHttp, assertion: ClientAssertion, *, audience: str | None = None) -> None:
        self._http = http
        self._assertion = assertion
        self.audience = audience or http.base_url + TOKEN_PATH
        self.device_id: str | None = None
        self.expires_in: int | None = None
        self._lock = asyncio.Lock()
        http.renew = self._renew

    async def token(self, device_id: str | None = None) -> str:
        """A new access token, bound to ``device_id`` when given (one of this integration's devices)."""
        async with self._lock:
            return await self._token(device_id)

    async def _token(self, device_id: str | None) -> str:
        form = self._assertion.form(self.audience, **({"device_id": device_id} if device_id else {}))
        async with self._http.open("POST", TOKEN_PATH, token=False, data=form) as response:
            if response.status != 200:
                raise await api_error(response)
            answer: dict[str, Any] = await response.json()
        self._http.token, self.device_id = str(answer["access_token"]), device_id
        self.expires_in = int(answer.get("expires_in", 0)) or None
        return self._http.token

    async def _renew(self, ended_token: str) -> str:
        async with self._lock:
            if self._http.token is not None and self._http.token != ended_token:
                return self._http.token
            return await self._token(self.device_id)


class IntegrationClient:
    """An EMR adapter's view of the relay: its device, the key directory, blobs, socket.io."""

    def __init__(self, url: str, *, client_id: str, private_key: PrivateKey, key_file: str | os.PathLike[str],
                 audience: str | None = None, now: Now | None = None,
                 http_session: aiohttp.ClientSession | None = None, request_timeout: float = 30) -> None:
        self.http = RelayHttp(url, session=http_session)
        assertion = ClientAssertion(client_id, private_key, **({"now": now} if now is not None else {}))
        self.auth = IntegrationAuth(self.http, assertion, audience=audience)
        self.devices = Devices(self.http, KeyFile(Path(key_file).expanduser()))
        self.directory = Directory(self.http)
        self.blobs = Blobs(self.http)
        self.realtime = Realtime(self.http, request_timeout=request_timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def login(self, device_name: str, *, one_time_keys: int = 0) -> DeviceSecrets:
        """An unbound token, then this integration's device (the key file's while it is active,
        else registered now, keys written to the key file first), then a token bound to it."""
        await self.auth.token()
        secrets_ = await self.devices.ensure(device_name, one_time_keys=one_time_keys)
        if secrets_.device_id is None:
            raise NotLoggedIn("the device was not registered")
        await self.auth.token(secrets_.device_id)
        return secrets_

    async def connect(self) -> None:
        """socket.io with the device-bound token (``blob.available`` arrives through ``realtime.on``)."""
        await self.realtime.connect()

    async def close(self) -> None:
        await self.realtime.disconnect()
        await self.http.close()

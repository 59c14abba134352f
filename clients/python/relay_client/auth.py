"""Logging in (password, then a TOTP or recovery code), logging out, and logging in again
when the relay ends the session (idle timeout, lifetime)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relay_client.errors import NotLoggedIn
from relay_client.http import RelayHttp

TotpSource = Callable[[], "str | Awaitable[str]"]


@dataclass(frozen=True)
class Credentials:
    """Who logs in. ``totp`` is asked for a fresh code at every login (the relay accepts each
    code once, so a re-login needs the next one); ``recovery_code`` is used once, for the
    first login only."""

    tenant: str
    username: str
    password: str = field(repr=False)
    totp: TotpSource | None = field(default=None, repr=False)
    recovery_code: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Session:
    token: str = field(repr=False)
    session_id: str
    expires_at: datetime
    idle_timeout_seconds: int
    device_id: str | None


class Authenticator:
    """Holds the credentials for as long as the client runs, to log in again when needed."""

    def __init__(self, http: RelayHttp) -> None:
        self._http = http
        self._credentials: Credentials | None = None
        self._device_id: str | None = None
        self._lock = asyncio.Lock()
        self.session: Session | None = None
        http.renew = self._renew

    async def login(self, credentials: Credentials, *, device_id: str | None = None) -> Session:
        """POST /api/v1/auth/login; with ``device_id`` the session is bound to that device."""
        async with self._lock:
            return await self._login(credentials, device_id)

    async def bind_device(self, device_id: str) -> Session:
        """Trade the current session for one bound to ``device_id`` (POST /api/v1/auth/device-session:
        no second login, no second TOTP code)."""
        async with self._lock:
            if self._credentials is None or self._http.token is None:
                raise NotLoggedIn("log in first")
            answer = await self._http.call("POST", "/api/v1/auth/device-session", json={"device_id": device_id},
                                           expect=(201,))
            return self._adopt(answer, device_id)

    async def logout(self) -> None:
        """End the session on the relay and forget the credentials."""
        async with self._lock:
            if self._http.token is not None:
                await self._http.call("POST", "/api/v1/auth/logout", expect=(204, 401))
            self._http.token, self.session, self._credentials = None, None, None

    async def me(self) -> dict[str, Any]:
        return dict(await self._http.call("GET", "/api/v1/me"))

    async def _renew(self, ended_token: str) -> str:
        async with self._lock:
            if self._http.token is not None and self._http.token != ended_token:
                return self._http.token
            if self._credentials is None:
                raise NotLoggedIn("the session ended and there are no credentials to log in again")
            session = await self._login(self._credentials, self._device_id)
            return session.token

    async def _login(self, credentials: Credentials, device_id: str | None) -> Session:
        body: dict[str, Any] = {"tenant": credentials.tenant, "username": credentials.username,
                                "password": credentials.password}
        if device_id is not None:
            body["device_id"] = device_id
        if credentials.recovery_code:
            body["recovery_code"] = credentials.recovery_code
        elif credentials.totp is not None:
            code = credentials.totp()
            body["totp_code"] = await code if inspect.isawaitable(code) else code
        answer = await self._http.call("POST", "/api/v1/auth/login", json=body, token=False, expect=(201,))
        self._credentials = Credentials(credentials.tenant, credentials.username, credentials.password,
                                        credentials.totp)
        return self._adopt(answer, device_id)

    def _adopt(self, answer: dict[str, Any], device_id: str | None) -> Session:
        self._device_id = device_id
        self.session = Session(answer["token"], answer["session_id"], datetime.fromisoformat(answer["expires_at"]),
                               int(answer["idle_timeout_seconds"]), device_id)
        self._http.token = answer["token"]
        return self.session

"""The REST transport: one aiohttp session, bearer tokens, the relay's error shape, and one
transparent re-login when the relay says the session has ended."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from relay_client.errors import NotLoggedIn, RelayApiError

SESSION_ENDED = frozenset({"session_expired", "invalid_token"})
Renew = Callable[[str], Awaitable[str]]


async def api_error(response: aiohttp.ClientResponse) -> RelayApiError:
    """The relay's ``{"error": {"code", "message", "details"}}`` as an exception."""
    retry_after = response.headers.get("Retry-After", "")
    wait = int(retry_after) if retry_after.isdigit() else None
    try:
        error = (await response.json(content_type=None))["error"]
        return RelayApiError(response.status, str(error["code"]), str(error.get("message", "")), error.get("details"),
                             wait)
    except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
        return RelayApiError(response.status, f"http_{response.status}", response.reason or "", None, wait)


class RelayHttp:
    """REST calls to one relay. ``renew`` is called with the ended token when a call is
    answered ``401 session_expired``/``invalid_token``; it returns a fresh token (a new login)
    and the call is made once more."""

    def __init__(self, base_url: str, *, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token: str | None = None
        self.renew: Renew | None = None
        self._session = session
        self._owns_session = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=30,
                                                                                sock_read=120))
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    @contextlib.asynccontextmanager
    async def open(self, method: str, path: str, *, token: bool = True, headers: Mapping[str, str] | None = None,
                   **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response of one call, body unread (for streaming); re-logs in once if needed.
        A body given as ``data`` must be re-sendable (bytes) for the retry."""
        for attempt in (1, 2):
            sent_token = self.token
            if token and sent_token is None:
                raise NotLoggedIn("log in first")
            all_headers = dict(headers or {})
            if token:
                all_headers["Authorization"] = f"Bearer {sent_token}"
            async with self.session.request(method, self.url(path), headers=all_headers, **kwargs) as response:
                if attempt == 1 and token and response.status == 401 and self.renew is not None:
                    error = await api_error(response)
                    if error.code in SESSION_ENDED:
                        await self.renew(sent_token or "")
                        continue
                    raise error
                yield response
                return

    async def call(self, method: str, path: str, *, json: Any = None, token: bool = True,
                   expect: tuple[int, ...] = (200, 201, 204)) -> Any:
        """A JSON call: the parsed answer (None for 204), or RelayApiError."""
        async with self.open(method, path, token=token, json=json) as response:
            if response.status not in expect:
                raise await api_error(response)
            if response.status == 204:
                return None
            return await response.json()

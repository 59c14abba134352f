"""The EMR's access token, as SMART Backend Services asks for it: OAuth 2.0 client credentials
with a ``private_key_jwt`` client assertion (RFC 7523) signed by the adapter's EMR key, sent to
the EMR's token endpoint; cached until shortly before it expires."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from relay_client.integration import ClientAssertion

from relay_emr_adapter.errors import Transient

REFRESH_MARGIN = 30.0
Monotonic = Callable[[], float]


class SmartToken:
    def __init__(self, session: aiohttp.ClientSession, token_url: str, assertion: ClientAssertion, scope: str, *,
                 timeout: float, monotonic: Monotonic | None = None) -> None:
        self._session = session
        self._token_url = token_url
        self._assertion = assertion
        self._scope = scope
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._monotonic = monotonic or asyncio.get_running_loop().time
        self._token: str | None = None
        self._until = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        """A valid access token, asking for a new one only when the cached one is about to expire."""
        async with self._lock:
            if self._token is None or self._monotonic() >= self._until:
                await self._fetch()
            assert self._token is not None
            return self._token

    def forget(self, token: str) -> None:
        """The EMR refused ``token`` (401): ask for a new one next time."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> None:
        form = self._assertion.form(self._token_url, scope=self._scope)
        try:
            async with self._session.post(self._token_url, data=form, timeout=self._timeout) as response:
                if response.status != 200:
                    # A refused token is the adapter's configuration, never the blob's fault:
                    # the blob stays pending and the status shows the code.
                    raise Transient(f"emr_token_http_{response.status}")
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError):
            raise Transient("emr_token_unreachable") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
            raise Transient("emr_token_malformed")
        lifetime = float(answer.get("expires_in", 300))
        self._token = answer["access_token"]
        self._until = self._monotonic() + max(0.0, lifetime - REFRESH_MARGIN)

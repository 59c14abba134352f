"""A real Relay server on 127.0.0.1 for one test, and the calls tests make against it."""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from relay.app import build_app
from relay.auth.principal import Role
from relay.runtime import Runtime, open_runtime
from relay.settings import Settings
from tests.support.clock import ManualClock

PASSWORD = "a long enough passphrase"


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out as a connection's local port."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _ports() -> Iterator[int]:
    """Ports below the ephemeral range, in random order, each once before any comes again.

    A port the kernel picks for a probe socket is ephemeral: between the probe closing and the
    server binding it, any outgoing connection (to PostgreSQL, Redis, a test's own client) may
    take it as its local port. Ports below that range are never taken that way.
    """
    low = _ephemeral_low()
    candidates = list(range(min(20000, low // 2), low))
    while True:
        random.shuffle(candidates)
        yield from candidates


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_unused_ports = _ports()


def free_port() -> int:
    """A loopback port nothing listens on, handed out once until every other one has been."""
    return next(port for port in _unused_ports if _bindable(port))


@dataclass
class Account:
    tenant_id: str
    tenant: str
    user_id: str
    username: str
    role: Role
    password: str = PASSWORD
    token: str = ""


@dataclass
class Relay:
    runtime: Runtime
    clock: ManualClock
    url: str
    http: aiohttp.ClientSession
    _tenants: dict[str, str] = field(default_factory=dict)

    async def call(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                   headers: dict[str, str] | None = None, **kwargs: Any) -> aiohttp.ClientResponse:
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        response = await self.http.request(method, self.url + path, json=json, headers=all_headers, **kwargs)
        await response.read()
        return response

    async def tenant(self, slug: str = "general") -> str:
        if slug not in self._tenants:
            self._tenants[slug] = (await self.runtime.accounts.create_tenant(slug, slug.title())).id
        return self._tenants[slug]

    async def account(self, username: str, role: Role = Role.CLINICIAN, *, tenant: str = "general",
                      login: bool = True) -> Account:
        tenant_id = await self.tenant(tenant)
        user = await self.runtime.accounts.create_user(
            tenant_id, username=username, display_name=username.title(), role=role, password=PASSWORD,
            actor=("operator", None),
        )
        account = Account(tenant_id, tenant, user.id, username, role)
        if login:
            account.token = await self.login(account)
        return account

    async def login(self, account: Account, **extra: Any) -> str:
        response = await self.call("POST", "/api/v1/auth/login", json={
            "tenant": account.tenant, "username": account.username, "password": account.password, **extra})
        assert response.status == 201, await response.text()
        return (await response.json())["token"]


@contextlib.asynccontextmanager
async def running_relay(settings: Settings, clock: ManualClock) -> AsyncIterator[Relay]:
    async with open_runtime(settings, clock) as runtime:
        runner = web.AppRunner(build_app(runtime), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", settings.port)
        await site.start()
        try:
            async with aiohttp.ClientSession() as http:
                yield Relay(runtime, clock, f"http://127.0.0.1:{settings.port}", http)
        finally:
            await runner.cleanup()

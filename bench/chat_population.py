"""Users, devices, device-bound sessions and group conversations on a running relay, through its REST
API as clients would make them (docs/keys.md, docs/messaging.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from bench.chat_servers import ADMIN, TENANT
from tests.support.devices import DeviceKeys, RegisteredDevice
from tests.support.harness import PASSWORD

T = TypeVar("T")
CONCURRENCY = 8


class SetupFailed(Exception):
    """The relay refused a step of the benchmark's setup."""


@dataclass(frozen=True)
class Device:
    user_id: str
    registered: RegisteredDevice
    token: str

    @property
    def id(self) -> str:
        return self.registered.id


@dataclass(frozen=True)
class Conversation:
    id: str
    devices: list[Device]


class Api:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self._http = http
        self._url = url

    async def call(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                   expect: int = 200) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self._http.request(method, self._url + path, json=json, headers=headers) as response:
            if response.status != expect:
                raise SetupFailed(f"{method} {path}: {response.status} {(await response.text())[:300]}")
            return await response.json()

    async def login(self, username: str, device_id: str | None = None) -> str:
        body = {"tenant": TENANT, "username": username, "password": PASSWORD}
        if device_id is not None:
            body["device_id"] = device_id
        return (await self.call("POST", "/api/v1/auth/login", json=body, expect=201))["token"]


async def bounded(work: list[Callable[[], Awaitable[T]]], limit: int = CONCURRENCY) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(step: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await step()

    return await asyncio.gather(*(one(step) for step in work))


async def user_devices(api: Api, admin_token: str, index: int, count: int) -> list[Device]:
    """Create clinician ``index``, register ``count`` devices and log in on each of them."""
    username = f"clinician{index:04d}"
    user = await api.call("POST", "/api/v1/users", token=admin_token, expect=201, json={
        "username": username, "display_name": f"Clinician {index}", "role": "clinician", "password": PASSWORD})
    token = await api.login(username)
    devices = []
    for number in range(count):
        keys = DeviceKeys()
        view = await api.call("POST", "/api/v1/devices", token=token, expect=201,
                              json=keys.registration(f"bench device {number}"))
        device = RegisteredDevice(view["id"], keys, view)
        devices.append(Device(user["id"], device, await api.login(username, device.id)))
    return devices


async def populate(url: str, *, users: int, devices_per_user: int, group_size: int) -> list[Conversation]:
    """``users`` clinicians with ``devices_per_user`` device-bound sessions each, in group
    conversations of ``group_size`` users created by their first member."""
    async with aiohttp.ClientSession() as http:
        api = Api(http, url)
        admin_token = await api.login(ADMIN)
        per_user = await bounded([
            lambda index=index: user_devices(api, admin_token, index, devices_per_user) for index in range(users)])
        groups = [per_user[start:start + group_size] for start in range(0, users, group_size)]

        async def conversation(group: list[list[Device]]) -> Conversation:
            creator = group[0][0]
            created = await api.call("POST", "/api/v1/conversations", token=creator.token, expect=201, json={
                "kind": "group", "member_user_ids": [devices[0].user_id for devices in group[1:]]})
            members = [device for devices in group for device in devices]
            view = await api.call("GET", f"/api/v1/conversations/{created['id']}", token=creator.token)
            listed = {recipient["id"] for recipient in view["recipients"]}
            if listed != {device.id for device in members}:
                raise SetupFailed(f"conversation {created['id']} lists {len(listed)} recipient devices, "
                                  f"expected {len(members)}")
            return Conversation(created["id"], members)

        return await bounded([lambda group=group: conversation(group) for group in groups])

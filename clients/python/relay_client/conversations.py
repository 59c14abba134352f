"""Conversations and consults over REST (docs/messaging.md). Records hold ids, states and
times only; anything clinical goes inside sealed envelopes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]

from relay_client.directory import DirectoryDevice
from relay_client.http import RelayHttp


@dataclass(frozen=True)
class Conversation:
    """A conversation as its members see it. ``recipients`` (only from ``get``) are every
    device a message must be sealed to; ``raw`` is the relay's whole answer."""

    id: str
    kind: str
    member_user_ids: list[str]
    recipients: list[DirectoryDevice]
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, view: dict[str, Any]) -> Conversation:
        members = view.get("member_user_ids")
        if members is None:
            members = [member["user_id"] if isinstance(member, dict) else member for member in view.get("members", [])]
        return cls(view["id"], view["kind"], list(members),
                   [DirectoryDevice.from_json(device) for device in view.get("recipients") or []], view)


@dataclass(frozen=True)
class Consult:
    """A consult: ``state`` is open, accepted, resolved or cancelled; ``offered_to`` says whose
    turn it is while open; messages go to ``conversation_id``."""

    id: str
    state: str
    conversation_id: str
    requester_id: str
    offered_to: str | None
    accepted_by: str | None
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, view: dict[str, Any]) -> Consult:
        return cls(view["id"], view["state"], view["conversation_id"], view["requester_id"], view.get("offered_to"),
                   view.get("accepted_by"), view)


def _items(answer: Any, key: str) -> list[Json]:
    return list(answer[key] if isinstance(answer, dict) else answer)


class Conversations:
    def __init__(self, http: RelayHttp) -> None:
        self._http = http

    async def create(self, kind: str, member_user_ids: Sequence[str], *,
                     lifespan_seconds: int | None = None) -> Conversation:
        """``kind`` is ``direct`` (one colleague; asking again returns the same one) or ``group``."""
        body: dict[str, Any] = {"kind": kind, "member_user_ids": list(member_user_ids)}
        if lifespan_seconds is not None:
            body["lifespan_seconds"] = lifespan_seconds
        return Conversation.from_json(await self._http.call("POST", "/api/v1/conversations", json=body))

    async def direct(self, colleague_user_id: str) -> Conversation:
        return await self.create("direct", [colleague_user_id])

    async def mine(self) -> list[Conversation]:
        answer = await self._http.call("GET", "/api/v1/conversations")
        return [Conversation.from_json(view) for view in _items(answer, "conversations")]

    async def get(self, conversation_id: str) -> Conversation:
        return Conversation.from_json(await self._http.call("GET", f"/api/v1/conversations/{conversation_id}"))

    async def add_members(self, conversation_id: str, user_ids: Sequence[str]) -> None:
        await self._http.call("POST", f"/api/v1/conversations/{conversation_id}/members",
                              json={"user_ids": list(user_ids)})

    async def remove_member(self, conversation_id: str, user_id: str) -> None:
        """Remove a member (the group's creator), or leave (one's own user id)."""
        await self._http.call("DELETE", f"/api/v1/conversations/{conversation_id}/members/{user_id}")


class Consults:
    def __init__(self, http: RelayHttp) -> None:
        self._http = http

    async def ask_colleague(self, colleague_user_id: str, *, lifespan_seconds: int | None = None) -> Consult:
        return await self._create({"colleague_user_id": colleague_user_id}, lifespan_seconds)

    async def ask_pool(self, pool_id: str, *, lifespan_seconds: int | None = None) -> Consult:
        return await self._create({"pool_id": pool_id}, lifespan_seconds)

    async def mine(self) -> list[Consult]:
        answer = await self._http.call("GET", "/api/v1/consults")
        return [Consult.from_json(view) for view in _items(answer, "consults")]

    async def get(self, consult_id: str) -> Consult:
        return Consult.from_json(await self._http.call("GET", f"/api/v1/consults/{consult_id}"))

    async def accept(self, consult_id: str) -> Consult:
        """RelayApiError ``consult_taken`` (409) when another pool member was faster."""
        return await self._transition(consult_id, "accept")

    async def resolve(self, consult_id: str) -> Consult:
        return await self._transition(consult_id, "resolve")

    async def cancel(self, consult_id: str) -> Consult:
        return await self._transition(consult_id, "cancel")

    async def pools(self) -> list[Json]:
        """The tenant's specialty pools (id, name, members in on-call order)."""
        return _items(await self._http.call("GET", "/api/v1/pools"), "pools")

    async def _create(self, target: dict[str, Any], lifespan_seconds: int | None) -> Consult:
        if lifespan_seconds is not None:
            target["lifespan_seconds"] = lifespan_seconds
        return Consult.from_json(await self._http.call("POST", "/api/v1/consults", json=target))

    async def _transition(self, consult_id: str, action: str) -> Consult:
        answer = await self._http.call("POST", f"/api/v1/consults/{consult_id}/{action}")
        return Consult.from_json(answer) if answer else await self.get(consult_id)

"""Declared REST endpoints: one table drives routing, authentication, role checks, body
validation and the OpenAPI document, so none of them can drift from the others."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel

from relay.auth.principal import Principal, Role

Body = TypeVar("Body", bound=BaseModel)


@dataclass
class Call(Generic[Body]):
    """What a handler gets: the request, the caller (None on public endpoints) and the parsed body."""

    request: web.Request
    principal: Principal | None
    body: Body

    @property
    def caller(self) -> Principal:
        assert self.principal is not None, "public endpoints have no caller"
        return self.principal

    def param(self, name: str) -> str:
        return self.request.match_info[name]


Handler = Callable[[Call[Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    roles: frozenset[Role] | None
    body: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    body_type: str = "application/json"
    produces: str = "application/json"
    query: type[BaseModel] | None = None
    raw_body: str | None = None

    @property
    def public(self) -> bool:
        return self.roles is None


@dataclass
class RouteTable:
    """The endpoints of one part of Relay, declared with ``@routes.get(...)`` and friends."""

    tag: str
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        roles: frozenset[Role] | None,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        body_type: str = "application/json",
        produces: str = "application/json",
        query: type[BaseModel] | None = None,
        raw_body: str | None = None,
    ) -> Callable[[Handler], Handler]:
        """``raw_body`` names the content type of a request body the handler streams itself
        from ``call.request.content`` (uploads); ``body`` is then None."""

        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(method, path, handler, summary, self.tag, roles, body, response, status, body_type, produces,
                         query, raw_body)
            )
            return handler

        return register

    def get(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("HEAD", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("OPTIONS", path, **kwargs)

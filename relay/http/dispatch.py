"""Turns a declared Endpoint into an aiohttp handler: authenticate, authorise, validate, call."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import BaseModel, ValidationError

from relay.errors import Forbidden, InvalidRequest, PayloadTooLarge, Unauthenticated, UnsupportedMediaType
from relay.http.endpoint import Call, Endpoint
from relay.http.schema import Empty, ResponseBody
from relay.portal.sessions import is_portal_token
from relay.runtime_key import RUNTIME

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def adapt(endpoint: Endpoint) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        runtime = request.app[RUNTIME]
        principal = None
        if endpoint.roles is not None:
            token = bearer_token(request)
            if token is None:
                raise Unauthenticated("this endpoint needs a bearer token", code="missing_token")
            if is_portal_token(token):
                principal = await runtime.portal.sessions.authenticate(token)
            else:
                principal = await runtime.sessions.authenticate(token)
            if principal.role not in endpoint.roles:
                raise Forbidden("your role may not do this", code="role_forbidden")
        body: BaseModel = Empty()
        if endpoint.query is not None:
            body = _validate_query(endpoint.query, request)
        if endpoint.body is not None:
            body = await _read_body(endpoint, request, runtime.settings.max_json_body)
        elif endpoint.raw_body is not None:
            if request.content_type != endpoint.raw_body:
                raise UnsupportedMediaType(f"send the body as {endpoint.raw_body}")
        elif request.can_read_body and request.content_length:
            raise InvalidRequest("this endpoint takes no request body", code="unexpected_body")
        result = await endpoint.handler(Call(request, principal, body))
        return _render(result, endpoint.status)

    handle.__name__ = endpoint.handler.__name__
    return handle


def _validate_query(model: type[BaseModel], request: web.Request) -> BaseModel:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as error:
        raise InvalidRequest("invalid query parameters", code="invalid_query", details=validation_problems(error)) from None


async def _read_body(endpoint: Endpoint, request: web.Request, limit: int) -> BaseModel:
    assert endpoint.body is not None
    if request.content_type != endpoint.body_type:
        raise UnsupportedMediaType(f"send the body as {endpoint.body_type}")
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request bodies are limited to {limit} bytes")
    raw = bytearray()
    async for chunk in request.content.iter_chunked(16384):
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"request bodies are limited to {limit} bytes")
    try:
        if endpoint.body_type == FORM:
            fields = dict(parse_qsl(bytes(raw).decode("utf-8", "replace"), keep_blank_values=True))
            return endpoint.body.model_validate(fields)
        return endpoint.body.model_validate_json(bytes(raw))
    except ValidationError as error:
        problems = validation_problems(error)
        if any(problem["type"] == "json_invalid" for problem in problems):
            raise InvalidRequest("the body is not valid JSON", code="malformed_json") from None
        raise InvalidRequest("the body does not match the schema", details=problems) from None


def validation_problems(error: ValidationError) -> list[dict[str, Any]]:
    """Validation problems without the offending input, which may hold PHI or secrets."""
    return [
        {"field": ".".join(str(part) for part in problem["loc"]), "type": problem["type"], "message": problem["msg"]}
        for problem in error.errors(include_input=False, include_url=False, include_context=False)
    ]


def _render(result: Any, status: int) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if result is None:
        return web.Response(status=204)
    if isinstance(result, ResponseBody):
        return web.Response(status=status, body=result.model_dump_json().encode(), content_type=JSON)
    raise TypeError(f"handler returned {type(result).__name__}")

"""Middleware and signals: errors as JSON with a code, coarse request metrics, security headers."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from relay.errors import ApiError
from relay.http.headers import NO_STORE, security_headers
from relay.http.schema import ErrorDetail, ErrorResponse
from relay.metrics import Metrics

log = logging.getLogger("relay.http")

Next = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "headers_too_large",
}


def error_response(status: int, code: str, message: str, details: object = None) -> web.Response:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message, details=details))
    return web.Response(status=status, body=body.model_dump_json(exclude_none=True).encode(), content_type="application/json")


def route_template(request: web.Request) -> str:
    """The matched route's template (ids stay out of logs and metrics)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def build_middlewares(metrics: Metrics) -> list[object]:
    @web.middleware
    async def answer(request: web.Request, handler: Next) -> web.StreamResponse:
        started = time.perf_counter()
        response = await _answer(request, handler)
        metrics.observe_request(request.method, route_template(request), response.status,
                                time.perf_counter() - started)
        return response

    return [answer]


def install_security_headers(app: web.Application, *, hsts_max_age: int | None) -> None:
    """Add the security headers as every response is prepared, streamed ones included."""
    headers = security_headers(hsts_max_age=hsts_max_age)

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(headers)
        response.headers.setdefault("Cache-Control", NO_STORE)

    app.on_response_prepare.append(add_headers)


async def _answer(request: web.Request, handler: Next) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        response = error_response(error.status, error.code, error.message, error.details)
        if error.retry_after is not None:
            response.headers["Retry-After"] = str(error.retry_after)
        return response
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = HTTP_CODES.get(error.status, "http_error")
        response = error_response(error.status, code, error.reason)
        if error.status == 405 and "Allow" in error.headers:
            response.headers["Allow"] = error.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error in %s %s", request.method, route_template(request))
        return error_response(500, "internal_error", "the server failed to answer; the error was logged")

"""A streaming reverse proxy from the test web server to the relay's tus endpoint, so a page
and ``/api/v1/uploads`` share one origin: the relay sends no CORS headers, on purpose, and a
browser app reaches it from its own origin as it would behind one front end.

Request and response bodies stream through in pieces (nothing is buffered whole); every
header passes but the hop-by-hop ones, and an absolute ``Location`` naming the relay is
rewritten to the proxy's origin (the relay's own is relative). Each request is logged, so a
test sees what the relay saw."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import ClientSession, ClientTimeout, web
from multidict import CIMultiDict

UPLOADS = "/api/v1/uploads"
READ_SIZE = 64 * 1024
TIMEOUT = ClientTimeout(total=30)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host"})


@dataclass(frozen=True)
class ProxiedRequest:
    """One request the proxy passed to the relay, and the relay's answer."""

    method: str
    path: str
    upload_offset: int | None
    status: int


def add_upload_proxy(app: web.Application, upstream: str, log: list[ProxiedRequest]) -> None:
    """Route every method on ``/api/v1/uploads`` and below to ``upstream`` (the relay's base URL).
    Add it before any catch-all route: aiohttp matches routes in the order they were added."""
    upstream = upstream.rstrip("/")
    sessions: list[ClientSession] = []

    async def session_context(_: web.Application) -> AsyncIterator[None]:
        async with ClientSession(timeout=TIMEOUT, auto_decompress=False) as session:
            sessions.append(session)
            yield

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = CIMultiDict((key, value) for key, value in request.headers.items() if key.lower() not in HOP_BY_HOP)
        body = request.content.iter_chunked(READ_SIZE) if request.body_exists else None
        async with sessions[0].request(request.method, upstream + request.rel_url.path_qs, headers=headers, data=body,
                                       allow_redirects=False) as answer:
            response = web.StreamResponse(status=answer.status, reason=answer.reason)
            for key, value in answer.headers.items():
                if key.lower() in HOP_BY_HOP:
                    continue
                if key.lower() == "location" and value.startswith(upstream + "/"):
                    value = f"{request.scheme}://{request.host}{value[len(upstream):]}"
                response.headers.add(key, value)
            await response.prepare(request)
            async for piece in answer.content.iter_chunked(READ_SIZE):
                await response.write(piece)
            await response.write_eof()
        offset = request.headers.get("Upload-Offset")
        log.append(ProxiedRequest(request.method, request.path, None if offset is None else int(offset), answer.status))
        return response

    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", UPLOADS, forward)
    app.router.add_route("*", UPLOADS + "/{tail:.*}", forward)

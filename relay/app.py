"""The aiohttp application: declared REST endpoints, socket.io, middlewares."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from relay.accounts import routes as account_routes
from relay.audit import routes as audit_routes
from relay.auth import integration_routes
from relay.auth import routes as auth_routes
from relay.auth.sessions import TOUCH_EVERY
from relay.camera import blob_routes, upload_routes
from relay.camera.tus import install_tus_headers
from relay.http import system_routes
from relay.http.dispatch import adapt
from relay.http.endpoint import Endpoint, RouteTable
from relay.http.middleware import build_middlewares, install_security_headers
from relay.http.openapi import build_openapi
from relay.keys import routes as key_routes
from relay.messaging import consult_routes, conversation_routes
from relay.messaging.realtime import create_socket_server, mount
from relay.periodic import every
from relay.portal import dev_routes, portal_routes
from relay.portal import page_routes as portal_page_routes
from relay.portal import routes as invitation_routes
from relay.runtime import Runtime
from relay.runtime_key import RUNTIME
from relay.storage.database import WAL_CHECKPOINT_SECONDS

READ_BUFFER = 1 << 20
"""Bytes a connection may buffer before aiohttp pauses reading it: large enough that an upload
keeps arriving while the last piece is hashed and written, small enough to bound memory."""

ROUTE_TABLES: tuple[RouteTable, ...] = (
    system_routes.routes,
    auth_routes.routes,
    account_routes.routes,
    integration_routes.routes,
    audit_routes.routes,
    key_routes.routes,
    upload_routes.routes,
    blob_routes.routes,
    conversation_routes.routes,
    consult_routes.routes,
    invitation_routes.routes,
    portal_routes.routes,
    dev_routes.routes,
    portal_page_routes.routes,
)


def all_endpoints() -> list[Endpoint]:
    return [endpoint for table in ROUTE_TABLES for endpoint in table.endpoints]


def build_app(runtime: Runtime) -> web.Application:
    settings = runtime.settings
    app = web.Application(
        middlewares=build_middlewares(runtime.metrics), client_max_size=settings.max_json_body,
        handler_args={"read_bufsize": READ_BUFFER},
    )
    install_security_headers(app, hsts_max_age=settings.hsts_max_age if settings.tls else None)
    install_tus_headers(app)
    app[RUNTIME] = runtime
    endpoints = all_endpoints()
    for endpoint in endpoints:
        app.router.add_route(endpoint.method, endpoint.path, adapt(endpoint), name=endpoint.handler.__name__)
    app[system_routes.OPENAPI_KEY] = build_openapi(endpoints, version=system_routes.relay_version())
    mount(create_socket_server(runtime), app)

    async def sweep(_: web.Application) -> AsyncIterator[None]:
        async with (
            every(settings.blob_sweep_interval, runtime.camera.sweeper.sweep, "the blob sweep"),
            every(settings.message_sweep_interval, runtime.messaging.sweep, "the message sweep"),
            every(settings.message_sweep_interval, runtime.portal.lifecycle.sweep, "the invitation sweep"),
            every(WAL_CHECKPOINT_SECONDS, runtime.checkpoint, "the checkpoint"),
            every(TOUCH_EVERY.total_seconds(), runtime.sessions.flush_activity, "the session activity flush"),
        ):
            yield

    app.cleanup_ctx.append(sweep)
    return app

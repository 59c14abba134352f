"""The application key under which the running Runtime is reachable from a request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from relay.runtime import Runtime

RUNTIME: web.AppKey[Runtime] = web.AppKey("relay_runtime")

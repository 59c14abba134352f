"""Liveness, readiness, metrics and the API description."""

from __future__ import annotations

from importlib.metadata import version

from aiohttp import web

from relay.http.endpoint import Call, RouteTable
from relay.http.schema import ResponseBody
from relay.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from relay.runtime_key import RUNTIME

routes = RouteTable("system")
OPENAPI_KEY: web.AppKey[dict[str, object]] = web.AppKey("openapi", dict)


class Health(ResponseBody):
    status: str


class Readiness(ResponseBody):
    status: str
    checks: dict[str, str]


@routes.get("/healthz", summary="Liveness: the process answers", roles=None, response=Health)
async def healthz(call: Call) -> Health:
    return Health(status="ok")


@routes.get("/readyz", summary="Readiness: the database (and Redis when configured) answer", roles=None,
            response=Readiness)
async def readyz(call: Call) -> web.Response:
    checks = await call.request.app[RUNTIME].ready()
    ready = all(state == "ok" for state in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    return web.json_response(body.model_dump(), status=200 if ready else 503)


@routes.get("/metrics", summary="Prometheus metrics (coarse; no ids, no PHI)", roles=None,
            produces="text/plain")
async def metrics(call: Call) -> web.Response:
    body = call.request.app[RUNTIME].metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = METRICS_CONTENT_TYPE
    return response


@routes.get("/api/openapi.json", summary="This API's OpenAPI 3.1 description", roles=None)
async def openapi(call: Call) -> web.Response:
    return web.json_response(call.request.app[OPENAPI_KEY])


def relay_version() -> str:
    return version("relay")

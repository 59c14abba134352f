"""/api/openapi.json describes every REST route the server answers, as valid OpenAPI 3.1."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from relay.app import all_endpoints, build_app
from relay.http.openapi import openapi_path
from relay.http.system_routes import OPENAPI_KEY
from relay.runtime import open_runtime
from relay.settings import load_settings
from tests.support.clock import ManualClock
from tests.support.harness import Relay

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[web.Application]:
    settings = load_settings({"data_dir": tmp_path / "data"}, environ={})
    async with open_runtime(settings, ManualClock()) as runtime:
        yield build_app(runtime)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, operation) for path, item in document["paths"].items()
            for method, operation in item.items() if method in METHODS]


def test_every_router_route_is_in_the_document(app: web.Application) -> None:
    document = app[OPENAPI_KEY]
    documented = {(method, path) for method, path, _ in operations(document)}
    routed = {
        (route.method, openapi_path(route.resource.canonical))
        for route in app.router.routes()
        if route.resource is not None and not route.resource.canonical.startswith("/socket.io")
    }
    assert routed, "no REST routes registered"
    assert routed <= documented, f"undocumented routes: {sorted(routed - documented)}"
    assert documented <= routed, f"documented but not routed: {sorted(documented - routed)}"


def test_the_document_is_valid_openapi_3_1(app: web.Application) -> None:
    document = app[OPENAPI_KEY]
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_the_validator_would_notice_a_broken_document(app: web.Application) -> None:
    broken = copy.deepcopy(app[OPENAPI_KEY])
    del broken["paths"]["/healthz"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_operation_declares_errors_and_its_security(app: web.Application) -> None:
    document = app[OPENAPI_KEY]
    endpoints = {(e.method, openapi_path(e.path)): e for e in all_endpoints()}
    error = document["components"]["responses"]["Error"]
    assert error["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    operation_ids = []
    for method, path, operation in operations(document):
        endpoint = endpoints[(method, path)]
        where = f"{method} {path}"
        operation_ids.append(operation["operationId"])
        assert operation["summary"], where
        responses = operation["responses"]
        assert responses["default"] == {"$ref": "#/components/responses/Error"}, where
        assert str(endpoint.status) in responses, where
        if endpoint.public:
            assert operation["security"] == [], where
        else:
            assert operation["security"] == [{"bearer": []}], where
            assert {"401", "403"} <= set(responses), where
            assert operation["x-relay-roles"], where
        if endpoint.body is not None:
            assert {"413", "415", "422"} <= set(responses), where
            assert endpoint.body_type in operation["requestBody"]["content"], where
        for name in (p["name"] for p in operation.get("parameters", []) if p["in"] == "path"):
            assert f"{{{name}}}" in path, where
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "A session or integration access token"}


async def test_the_served_document_is_the_generated_one(relay: Relay) -> None:
    response = await relay.call("GET", "/api/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    document = await response.json()
    validate(document)
    assert {(m, p) for m, p, _ in operations(document)} == {
        (e.method, openapi_path(e.path)) for e in all_endpoints()}

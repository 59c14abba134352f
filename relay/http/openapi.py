"""The OpenAPI 3.1 document, generated from the declared endpoints and their pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from relay.http.endpoint import Endpoint
from relay.http.schema import ErrorResponse

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_REF = "#/components/responses/Error"
_PARAM = re.compile(r"{(\w+)(?::[^}]*)?}")


def openapi_path(path: str) -> str:
    """aiohttp's ``/x/{id:regex}`` as OpenAPI's ``/x/{id}``."""
    return _PARAM.sub(r"{\1}", path)


def error_statuses(endpoint: Endpoint) -> list[int]:
    """The 4xx statuses the dispatcher itself can answer for this endpoint, before its handler runs."""
    statuses = []
    if not endpoint.public:
        statuses += [401, 403]
    if _PARAM.search(endpoint.path):
        statuses.append(404)
    if endpoint.body is not None or endpoint.raw_body is not None:
        statuses += [413, 415]
    if endpoint.body is not None or endpoint.query is not None:
        statuses.append(422)
    return sorted(statuses)


def build_openapi(endpoints: list[Endpoint], *, version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorResponse}
    for endpoint in endpoints:
        models.update(m for m in (endpoint.body, endpoint.response, endpoint.query) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, defs = models_json_schema(
        [(m, "validation") for m in ordered], ref_template=REF_TEMPLATE
    )
    schema_of = {model: refs[(model, "validation")] for model in ordered}
    schemas = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        path = openapi_path(endpoint.path)
        operation: dict[str, Any] = {
            "operationId": endpoint.handler.__name__,
            "summary": endpoint.summary,
            "tags": [endpoint.tag],
            "responses": {str(status): {"$ref": ERROR_REF} for status in error_statuses(endpoint)}
            | {"default": {"$ref": ERROR_REF}},
            "security": [] if endpoint.public else [{"bearer": []}],
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(endpoint.path)
        ]
        if endpoint.query is not None:
            properties = schemas[schema_of[endpoint.query]["$ref"].rsplit("/", 1)[1]]["properties"]
            for name, field in endpoint.query.model_fields.items():
                parameters.append({"name": name, "in": "query", "required": field.is_required(),
                                   "description": field.description or "", "schema": properties[name]})
        if parameters:
            operation["parameters"] = parameters
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {endpoint.body_type: {"schema": schema_of[endpoint.body]}},
            }
        elif endpoint.raw_body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {endpoint.raw_body: {"schema": {"type": "string", "format": "binary"}}},
            }
        success: dict[str, Any] = {"description": endpoint.summary}
        if endpoint.response is not None:
            success["content"] = {"application/json": {"schema": schema_of[endpoint.response]}}
        elif endpoint.status != 204:
            success["content"] = {endpoint.produces: {"schema": {"type": "string"}}}
        operation["responses"][str(endpoint.status)] = success
        if endpoint.roles is not None:
            operation["x-relay-roles"] = sorted(role.value for role in endpoint.roles)
        paths.setdefault(path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Relay", "version": version,
                 "description": "End-to-end encrypted messaging hub for clinical teams. "
                                "The relay only ever handles sealed envelopes."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {"Error": {"description": "An error with a machine-readable code",
                                    "content": {"application/json": {"schema": schema_of[ErrorResponse]}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A session or integration access token"}},
        },
    }

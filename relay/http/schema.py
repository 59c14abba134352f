"""Base classes of request and response bodies.

Requests are strict: unknown fields, wrong types and missing fields are refused, so a
client's mistake is an error it sees rather than data silently dropped or coerced.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class QueryParams(BaseModel):
    """Query strings arrive as text, so these coerce ("10" -> 10) but still refuse unknown names."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResponseBody(BaseModel):
    model_config = ConfigDict(frozen=True)


class Empty(RequestBody):
    """No fields."""


class ErrorDetail(ResponseBody):
    code: str
    message: str
    details: object | None = None


class ErrorResponse(ResponseBody):
    error: ErrorDetail

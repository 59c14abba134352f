"""Relay's error types. Every error a client can cause carries an HTTP status and a stable code."""

from __future__ import annotations

from typing import Any


class RelayError(Exception):
    """Base of every error Relay raises on purpose."""


class SettingsError(RelayError):
    """The configuration cannot be used; the message says which setting and why."""


class ApiError(RelayError):
    """An error answered to a client: HTTP status, machine-readable code, human message."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, details: Any = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.retry_after = retry_after


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthenticated(ApiError):
    status, code = 401, "unauthenticated"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "body_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class InvalidRequest(ApiError):
    status, code = 422, "invalid_request"


class Locked(ApiError):
    """Answered with Retry-After when ``retry_after`` is given."""

    status, code = 423, "account_locked"


class TooManyRequests(ApiError):
    """Answered with Retry-After; pass ``retry_after``."""

    status, code = 429, "rate_limited"


class Unavailable(ApiError):
    status, code = 503, "unavailable"

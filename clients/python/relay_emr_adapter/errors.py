"""Why a blob was not filed: a permanent refusal (a reason code the sender sees) or a transient
failure (retried). Messages hold codes and ids only, never what the envelope holds."""

from __future__ import annotations


class AdapterError(Exception):
    """Base of the adapter's own errors."""


class ConfigError(AdapterError):
    """The configuration file is missing, unreadable, or has a bad key (named in the message)."""


class Refused(AdapterError):
    """The blob can never be filed as it is: rejected on the relay with ``reason``
    (relay_client.blobs.REJECT_REASONS); ``detail`` is a code for the journal."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Transient(AdapterError):
    """The EMR (or its token endpoint) is down, slow or answered 5xx/429: try again later."""

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after

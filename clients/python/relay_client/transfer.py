"""What uploads and downloads share: bounded retries with backoff over transient failures
(a dropped connection, a timeout, a 5xx or 429 answer)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from relay_client.errors import RelayApiError

TRANSIENT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, RelayApiError):
        return error.status >= 500 or error.status == 429
    return isinstance(error, TRANSIENT_ERRORS)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` transient failures in a row are tolerated; the wait doubles from ``delay``
    up to ``max_delay`` seconds. Progress resets the count."""

    attempts: int = 6
    delay: float = 0.25
    max_delay: float = 8.0

    def wait(self, failures: int, retry_after: int | None = None) -> float:
        """Seconds to wait before the next attempt; the relay's Retry-After wins, within 60 s."""
        if retry_after is not None:
            return float(min(retry_after, 60))
        return float(min(self.max_delay, self.delay * 2 ** max(0, failures - 1)))


DEFAULT_RETRY = RetryPolicy()

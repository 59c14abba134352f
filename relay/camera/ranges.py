"""HTTP Range for downloads (RFC 9110 §14): one byte range, or the whole blob."""

from __future__ import annotations

import re

from relay.errors import ApiError

_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")


class RangeNotSatisfiable(ApiError):
    status, code = 416, "range_not_satisfiable"


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) for a single satisfiable range; None to send everything (no Range, a
    syntax Relay ignores as RFC 9110 allows, or several ranges); RangeNotSatisfiable when the
    range lies wholly past the end."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable(f"the blob is {size} bytes")
        return max(0, size - suffix), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(f"the blob is {size} bytes")
    return start, end

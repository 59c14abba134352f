"""How each audit row is chained: an HMAC-SHA256 under the keyring's audit key over the row's
canonical JSON, which includes the previous row's hash. Shared by appending and verifying."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

GENESIS = "0" * 64

CHAINED_FIELDS = (
    "seq",
    "occurred_at",
    "tenant_id",
    "actor_type",
    "actor_id",
    "action",
    "object_type",
    "object_id",
    "outcome",
    "details",
    "prev_hash",
)


def canonical(row: Mapping[str, Any]) -> bytes:
    values = {name: row[name] for name in CHAINED_FIELDS}
    occurred: datetime = values["occurred_at"]
    values["occurred_at"] = occurred.isoformat(timespec="microseconds")
    return json.dumps(values, sort_keys=True, separators=(",", ":")).encode()


def row_hash(audit_key: bytes, row: Mapping[str, Any]) -> str:
    return hmac.new(audit_key, canonical(row), hashlib.sha256).hexdigest()


def hashes_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())

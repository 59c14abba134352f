"""The adapter's journal (SQLite, mode 0600, in the state directory): per blob id its state, the
reason code and the last error code, never anything from inside an envelope. It lets a restarted
adapter finish what was under way: a blob ``filed`` but not yet acknowledged is acknowledged
without filing it again; a ``rejected`` one not yet reported is reported."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    blob_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    resource TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    settled INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS last_error (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    blob_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


class State(StrEnum):
    PENDING = "pending"
    FILED = "filed"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Entry:
    blob_id: str
    state: State
    reason: str | None
    detail: str | None
    resource: str | None
    attempts: int
    settled: bool


@dataclass(frozen=True)
class Summary:
    pending: int
    filed: int
    rejected: int
    unsettled: int
    last_error: dict[str, str] | None

    def to_json(self) -> dict[str, object]:
        return {"pending": self.pending, "filed": self.filed, "rejected": self.rejected,
                "awaiting_relay": self.unsettled, "last_error": self.last_error}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def get(self, blob_id: str) -> Entry | None:
        row = self._db.execute("SELECT blob_id, state, reason, detail, resource, attempts, settled FROM blobs "
                               "WHERE blob_id = ?", (blob_id,)).fetchone()
        return None if row is None else Entry(row[0], State(row[1]), row[2], row[3], row[4], row[5], bool(row[6]))

    def attempt(self, blob_id: str) -> None:
        """A filing attempt starts (the blob is pending until it is filed or rejected)."""
        self._db.execute("INSERT INTO blobs (blob_id, state, attempts, updated_at) VALUES (?, 'pending', 1, ?) "
                         "ON CONFLICT (blob_id) DO UPDATE SET attempts = attempts + 1, updated_at = excluded.updated_at",
                         (blob_id, _now()))

    def failed(self, blob_id: str, detail: str) -> None:
        """A transient failure: the blob stays pending; ``detail`` is a code."""
        now = _now()
        self._db.execute("UPDATE blobs SET detail = ?, updated_at = ? WHERE blob_id = ?", (detail, now, blob_id))
        self._db.execute("INSERT INTO last_error (id, blob_id, detail, at) VALUES (1, ?, ?, ?) ON CONFLICT (id) "
                         "DO UPDATE SET blob_id = excluded.blob_id, detail = excluded.detail, at = excluded.at",
                         (blob_id, detail, now))

    def filed(self, blob_id: str, resource: str | None) -> None:
        self._db.execute("UPDATE blobs SET state = 'filed', resource = ?, detail = NULL, updated_at = ? "
                         "WHERE blob_id = ?", (resource, _now(), blob_id))

    def rejected(self, blob_id: str, reason: str, detail: str) -> None:
        self._db.execute("INSERT INTO blobs (blob_id, state, reason, detail, updated_at) "
                         "VALUES (?, 'rejected', ?, ?, ?) ON CONFLICT (blob_id) DO UPDATE SET state = 'rejected', "
                         "reason = excluded.reason, detail = excluded.detail, updated_at = excluded.updated_at",
                         (blob_id, reason, detail, _now()))

    def settled(self, blob_id: str) -> None:
        """The relay was told (acknowledged or rejected)."""
        self._db.execute("UPDATE blobs SET settled = 1, updated_at = ? WHERE blob_id = ?", (_now(), blob_id))

    def summary(self) -> Summary:
        counts = dict(self._db.execute("SELECT state, count(*) FROM blobs GROUP BY state").fetchall())
        unsettled = self._db.execute("SELECT count(*) FROM blobs WHERE settled = 0 AND state != 'pending'").fetchone()
        error = self._db.execute("SELECT blob_id, detail, at FROM last_error").fetchone()
        return Summary(counts.get("pending", 0), counts.get("filed", 0), counts.get("rejected", 0), unsettled[0],
                       None if error is None else {"blob_id": error[0], "code": error[1], "at": error[2]})

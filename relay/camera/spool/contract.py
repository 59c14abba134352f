"""The transient spool: where sealed ciphertext waits between upload and acknowledgement.

One contract, two implementations that pass the same tests: the filesystem (embedded
default) and Redis (scale-out, any node serves any blob). A spool holds opaque byte objects
under opaque ids; it never sees a client's file name and never holds plaintext.

Every object has a deadline. The camera service deletes objects explicitly when delivery
completes or a window ends (and audits it); the deadline is the spool's own guarantee that
nothing outlives its window even if that explicit delete never happens. An object whose
deadline has passed (``deadline <= clock.now()``) is missing to every method except
``delete`` and ``sweep`` from that instant, before anything has physically removed it.

Concurrency: appends to one object are linearised piece by piece. Each piece the source
yields is written only if the object still holds exactly the bytes that append expects to
precede it; otherwise the append fails with SpoolOffsetMismatch and writes nothing more. Two
appends at the same offset therefore never interleave: one wins, the other is refused.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime

from relay.errors import RelayError

OBJECT_ID = re.compile(r"[0-9a-f]{32}")


class SpoolError(RelayError):
    """Base of the spool's errors."""


class SpoolInvalidId(SpoolError, ValueError):
    """The id is not 32 lowercase hex digits (relay.ids.new_id); nothing is built from it."""


class SpoolObjectMissing(SpoolError):
    """No object under that id (never created, deleted, or past its deadline)."""


class SpoolObjectExists(SpoolError):
    """``create`` was given an id that already holds an object; the object is left untouched."""


class SpoolOffsetMismatch(SpoolError):
    """An append did not start at the object's current size."""

    def __init__(self, expected: int, given: int) -> None:
        super().__init__(f"append at {given}, but the object holds {expected} bytes")
        self.expected = expected
        self.given = given


def check_object_id(object_id: str) -> str:
    """Return ``object_id`` if it is an opaque spool id, else raise SpoolInvalidId."""
    if not isinstance(object_id, str) or OBJECT_ID.fullmatch(object_id) is None:
        raise SpoolInvalidId("a spool object id is 32 lowercase hex digits")
    return object_id


def check_deadline(expires_at: datetime) -> datetime:
    """Return ``expires_at`` if it is timezone-aware, else raise ValueError."""
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise ValueError("a spool deadline must be timezone-aware")
    return expires_at


class Spool(ABC):
    """Every method refuses an id that is not opaque hex with SpoolInvalidId."""

    @abstractmethod
    async def create(self, object_id: str, *, expires_at: datetime) -> None:
        """Create an empty object that vanishes at ``expires_at`` at the latest.

        SpoolObjectExists if the id is taken (even by an object past its deadline that no
        sweep has removed yet); ValueError if ``expires_at`` is naive.
        """

    @abstractmethod
    async def append(self, object_id: str, offset: int, chunks: AsyncIterable[bytes]) -> int:
        """Write ``chunks`` at ``offset`` (which must equal the current size) and return the new size.

        Streams: holds one chunk at a time, and writes each before asking the source for the
        next. If the source fails midway, its exception propagates, the bytes written so far
        stay, and ``size`` tells where to resume. When append returns (or raises), the bytes
        it wrote are as durable as the implementation offers (see docs/spool.md).
        SpoolOffsetMismatch if ``offset`` (or, later, the running position) is not the size;
        SpoolObjectMissing if the object is gone or past its deadline, also midway.
        """

    async def put(self, object_id: str, data: bytes, *, expires_at: datetime, synced: bool = True) -> None:
        """Create an object holding ``data``, for the small ones a caller holds whole (a message,
        an envelope head): ``create`` then ``append``, in one step where the implementation can.
        As durable as ``append`` when it returns; raises what they raise. ``synced=False`` is for
        a caller whose own record of the object reaches the disk later anyway (a message row on
        SQLite): the object then survives the process at once but the disk only after ``sync``,
        where an implementation syncs at all.
        """
        await self.create(object_id, expires_at=expires_at)
        await self.append(object_id, 0, _whole(data))

    async def sync(self) -> None:
        """Make durable every object put with ``synced=False`` before this call; nothing to do
        where every write is as durable as it gets when it returns."""

    @abstractmethod
    async def size(self, object_id: str) -> int:
        """The object's size in bytes; SpoolObjectMissing if there is none."""

    @abstractmethod
    def read(self, object_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield the bytes in [start, end) (end defaults to the size) in bounded chunks.

        An async generator: errors surface on the first iteration, so callers that must
        answer before streaming (HTTP status, Content-Length) call ``size`` first.
        SpoolObjectMissing if the object is gone or past its deadline (also if it is deleted
        midway); ValueError unless 0 <= start <= end <= size.
        """

    @abstractmethod
    async def set_expiry(self, object_id: str, expires_at: datetime) -> None:
        """Move the object's deadline (an upload completes, a window is extended).

        SpoolObjectMissing if the object is gone or already past its deadline.
        """

    @abstractmethod
    async def delete(self, object_id: str) -> bool:
        """Remove the object and every byte of it; False if it was already gone.

        Removes an object past its deadline too (True while any of its bytes were still held).
        """

    @abstractmethod
    async def sweep(self, now: datetime) -> list[str]:
        """Remove objects whose deadline is <= ``now`` and return their ids.

        Each removed id is returned by exactly one sweep, even when several nodes sweep at
        once; an object ``delete`` removed is never returned.
        """

    async def close(self) -> None:
        """Release resources."""


async def _whole(data: bytes) -> AsyncIterator[bytes]:
    yield data

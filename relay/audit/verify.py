"""Verifying the audit chain: every row, in seq order, in batches (constant memory), with each
kind of tampering named precisely by sequence number.

What each kind looks like in the database, and how it is told apart:

- edited: a row's HMAC fails, yet it still sits in its place in the chain.
- deleted: seq jumps (``rows N..M missing``); the next row's prev_hash names a row that is gone.
- inserted: a row that is not part of the chain: its HMAC fails and the next row links past it,
  it follows the head recorded in ``audit_head``, or it precedes the first row.
- reordered: a row whose HMAC fails under its seq but verifies under another one (rows swapped,
  or renumbered to open or close a gap).
- truncated: the head records more rows than there are (the last rows were deleted).
- broken_link: two authentic neighbours that do not link (the chain was spliced).
- head_mismatch: the head names a different last row than the chain ends with, or is missing.
- anchor_mismatch: a row anchored outside the database (``--anchor SEQ:HASH``) is gone or differs.

Reports carry sequence numbers and kinds only, never a row's contents.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select

from relay.audit.chain import GENESIS, hashes_equal, row_hash
from relay.storage.database import Database
from relay.storage.tables import audit_events, audit_head

BATCH_SIZE = 1000
MAX_FINDINGS = 1000
SWAP_CANDIDATES = 64
HEAD_LABEL_HEX = 32
_ANCHOR = re.compile(r"^(\d{1,19}):([0-9a-f]{16,64})$")


class Tampering(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    BROKEN_LINK = "broken_link"
    HEAD_MISMATCH = "head_mismatch"
    ANCHOR_MISMATCH = "anchor_mismatch"


@dataclass(frozen=True)
class Finding:
    """One problem over the rows ``first_seq..last_seq``; ``offset`` is how far a reordered row
    moved (it was written as ``seq + offset``)."""

    kind: Tampering
    first_seq: int
    last_seq: int
    offset: int = 0

    @property
    def rows(self) -> str:
        return f"row {self.first_seq}" if self.first_seq == self.last_seq else f"rows {self.first_seq}..{self.last_seq}"

    @property
    def message(self) -> str:
        rows = self.rows
        match self.kind:
            case Tampering.EDITED:
                return f"{rows} altered after being written (HMAC does not verify)"
            case Tampering.DELETED:
                return f"{rows} missing"
            case Tampering.INSERTED:
                return f"{rows} not written by Relay (not part of the chain)"
            case Tampering.REORDERED if self.first_seq == self.last_seq:
                return f"row {self.first_seq} holds the event written as row {self.first_seq + self.offset}"
            case Tampering.REORDERED:
                return f"{rows} moved: each holds the event written as its seq {self.offset:+d}"
            case Tampering.TRUNCATED:
                return f"truncated after {self.first_seq - 1}: {rows} deleted from the end (the head records {self.last_seq})"
            case Tampering.BROKEN_LINK:
                return f"chain broken before row {self.first_seq}"
            case Tampering.HEAD_MISMATCH:
                return f"the head record does not match row {self.first_seq}"
            case Tampering.ANCHOR_MISMATCH:
                return f"anchored row {self.first_seq} is missing or differs from its anchor"
        raise AssertionError(self.kind)

    def line(self) -> str:
        return f"{self.kind.value}: {self.message}"


@dataclass(frozen=True)
class Anchor:
    """A row's seq and (a prefix of) its hash, copied out of the database earlier."""

    seq: int
    hash_prefix: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        match = _ANCHOR.fullmatch(text.strip().lower())
        if match is None:
            raise ValueError("an anchor is SEQ:HASH with 16 to 64 hex digits of the hash, as `relay audit verify` prints it")
        return cls(int(match.group(1)), match.group(2))

    def matches(self, stored_hash: str) -> bool:
        return hashes_equal(stored_hash[: len(self.hash_prefix)], self.hash_prefix)


@dataclass(frozen=True)
class Verification:
    rows: int
    head_seq: int | None
    head_hash: str | None
    findings: list[Finding]
    unlisted: int = 0

    @property
    def intact(self) -> bool:
        return not self.findings

    @property
    def finding_count(self) -> int:
        return len(self.findings) + self.unlisted

    @property
    def first_bad_seq(self) -> int | None:
        return min((finding.first_seq for finding in self.findings), default=None)

    @property
    def head_label(self) -> str:
        """``SEQ:HASHPREFIX``: what to anchor externally, and what ``--anchor`` takes."""
        if self.head_seq is None or self.head_hash is None:
            return "none"
        return f"{self.head_seq}:{self.head_hash[:HEAD_LABEL_HEX]}"


@dataclass
class _Suspect:
    """A row whose HMAC fails, kept until its successor (and perhaps a swap partner) is seen."""

    row: Mapping[str, Any]
    before_hash: str
    linked: bool
    written_as: int | None = None
    skipped: bool = False

    @property
    def seq(self) -> int:
        return int(self.row["seq"])


@dataclass
class _Report:
    """Findings, merging runs of adjacent rows with the same kind; capped at MAX_FINDINGS."""

    findings: list[Finding] = field(default_factory=list)
    unlisted: int = 0

    def add(self, kind: Tampering, first: int, last: int | None = None, offset: int = 0) -> None:
        last = first if last is None else last
        if self.findings:
            previous = self.findings[-1]
            if previous.kind is kind and previous.offset == offset and previous.last_seq + 1 == first \
                    and kind in (Tampering.EDITED, Tampering.INSERTED, Tampering.REORDERED):
                self.findings[-1] = Finding(kind, previous.first_seq, last, offset)
                return
        if len(self.findings) >= MAX_FINDINGS:
            self.unlisted += 1
            return
        self.findings.append(Finding(kind, first, last, offset))


class _ChainWalker:
    """Visits rows in seq order and classifies every row that does not fit the chain."""

    def __init__(self, audit_key: bytes, anchors: tuple[Anchor, ...]) -> None:
        self._key = audit_key
        self._anchors = {anchor.seq: anchor for anchor in anchors}
        self._anchors_seen: set[int] = set()
        self.report = _Report()
        self.rows = 0
        self.max_seq = 0
        self.last_seq = 0
        self.last_hash = GENESIS
        self._last_authentic = True
        self._shift = 0
        self._pending: _Suspect | None = None
        self._candidates: deque[_Suspect] = deque()

    def visit(self, row: Mapping[str, Any]) -> None:
        self.rows += 1
        seq = int(row["seq"])
        self.max_seq = max(self.max_seq, seq)
        self._check_anchor(seq, row["hash"])
        if seq < 1:
            self.report.add(Tampering.INSERTED, seq)
            return
        gap = seq > self.last_seq + 1
        if gap:
            self.report.add(Tampering.DELETED, self.last_seq + 1, seq - 1)
        linked = row["prev_hash"] == self.last_hash
        if self._pending is not None:
            self._pending.skipped = not gap and row["prev_hash"] == self._pending.before_hash
            self._settle(self._pending)
            self._pending = None
        authentic = self._verifies(row, seq)
        if authentic and not linked and not gap and self._last_authentic:
            self.report.add(Tampering.BROKEN_LINK, seq)
        if not authentic:
            self._suspect(_Suspect(row, self.last_hash, linked))
        self.last_seq, self.last_hash, self._last_authentic = seq, row["hash"], authentic

    def finish(self) -> None:
        if self._pending is not None:
            self._settle(self._pending)
            self._pending = None
        while self._candidates:
            self._emit(self._candidates.popleft())
        for seq in sorted(set(self._anchors) - self._anchors_seen):
            self.report.add(Tampering.ANCHOR_MISMATCH, seq)

    def _verifies(self, row: Mapping[str, Any], seq: int) -> bool:
        return hashes_equal(row_hash(self._key, {**row, "seq": seq}), row["hash"])

    def _suspect(self, suspect: _Suspect) -> None:
        seq = suspect.seq
        nearby = [seq + self._shift] if self._shift not in (0, 1, -1) else []
        partners = [] if suspect.linked else [c.seq for c in self._candidates if c.written_as is None]
        for candidate in [*nearby, seq - 1, seq + 1, *partners]:
            if candidate >= 1 and self._verifies(suspect.row, candidate):
                suspect.written_as = candidate
                self._shift = candidate - seq
                break
        if not suspect.linked:
            for other in self._candidates:
                if other.written_as is None and self._verifies(other.row, seq):
                    other.written_as = seq
        self._pending = suspect

    def _settle(self, suspect: _Suspect) -> None:
        """The successor has been seen: emit now, or keep as a possible swap partner."""
        if suspect.written_as is not None or suspect.linked:
            self._emit(suspect)
            return
        self._candidates.append(suspect)
        if len(self._candidates) > SWAP_CANDIDATES:
            self._emit(self._candidates.popleft())

    def _emit(self, suspect: _Suspect) -> None:
        if suspect.written_as is not None:
            self.report.add(Tampering.REORDERED, suspect.seq, offset=suspect.written_as - suspect.seq)
        elif suspect.skipped:
            self.report.add(Tampering.INSERTED, suspect.seq)
        else:
            self.report.add(Tampering.EDITED, suspect.seq)

    def _check_anchor(self, seq: int, stored_hash: str) -> None:
        anchor = self._anchors.get(seq)
        if anchor is not None:
            self._anchors_seen.add(seq)
            if not anchor.matches(stored_hash):
                self.report.add(Tampering.ANCHOR_MISMATCH, seq)


async def verify_chain(
    database: Database, audit_key: bytes, *, anchors: tuple[Anchor, ...] = (), batch_size: int = BATCH_SIZE
) -> Verification:
    """Walk the whole chain and compare its end with the head record.

    Safe on a live server: rows and the head commit together, so the head is read after the
    walk, and rows appended meanwhile (up to that head) are walked too before judging the end.
    """
    walker = _ChainWalker(audit_key, anchors)
    async for row in _rows(database, after=None, through=None, batch_size=batch_size):
        walker.visit(row)
    head = await _read_head(database)
    if head is not None and head.seq > walker.max_seq:
        async for row in _rows(database, after=walker.max_seq, through=head.seq, batch_size=batch_size):
            walker.visit(row)
    walker.finish()
    report = walker.report
    if head is None:
        if walker.rows:
            report.add(Tampering.HEAD_MISMATCH, walker.last_seq)
        return Verification(walker.rows, None, None, _ordered(report.findings), report.unlisted)
    if walker.max_seq < head.seq:
        report.add(Tampering.TRUNCATED, walker.max_seq + 1, head.seq)
    elif walker.max_seq > head.seq:
        beyond = await _first_seq_after(database, head.seq)
        report.findings = [_clamp(f, head.seq) for f in report.findings if f.first_seq <= head.seq]
        report.add(Tampering.INSERTED, beyond if beyond is not None else head.seq + 1, walker.max_seq)
    last_hash = walker.last_hash if walker.last_seq == head.seq else await _hash_at(database, head.seq)
    if last_hash is not None and not hashes_equal(last_hash, head.hash):
        report.add(Tampering.HEAD_MISMATCH, head.seq)
    return Verification(walker.rows, head.seq, head.hash, _ordered(report.findings), report.unlisted)


def _ordered(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda finding: (finding.first_seq, finding.last_seq, finding.kind.value))


def _clamp(finding: Finding, through: int) -> Finding:
    if finding.last_seq <= through:
        return finding
    return Finding(finding.kind, finding.first_seq, through, finding.offset)


async def _rows(
    database: Database, *, after: int | None, through: int | None, batch_size: int
) -> AsyncIterator[Mapping[str, Any]]:
    """Rows in seq order, one short read per batch (no long-running transaction)."""
    while True:
        query = select(audit_events).order_by(audit_events.c.seq).limit(batch_size)
        if after is not None:
            query = query.where(audit_events.c.seq > after)
        if through is not None:
            query = query.where(audit_events.c.seq <= through)
        async with database.read() as connection:
            batch = [row._mapping for row in await connection.execute(query)]
        for row in batch:
            yield row
        if len(batch) < batch_size:
            return
        after = int(batch[-1]["seq"])


async def _read_head(database: Database) -> Any:
    async with database.read() as connection:
        return (await connection.execute(select(audit_head).where(audit_head.c.id == 1))).first()


async def _hash_at(database: Database, seq: int) -> str | None:
    async with database.read() as connection:
        return await connection.scalar(select(audit_events.c.hash).where(audit_events.c.seq == seq))


async def _first_seq_after(database: Database, seq: int) -> int | None:
    async with database.read() as connection:
        return await connection.scalar(select(func.min(audit_events.c.seq)).where(audit_events.c.seq > seq))

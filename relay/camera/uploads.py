"""Sealed uploads (the service under the tus routes): create, resume, append, terminate, and
completion, which turns an upload into a blob waiting for its recipients.

- Bytes stream from the request into the spool; only the envelope head is ever buffered.
- The head is checked as soon as it has arrived: a malformed one, a sender device other than
  the uploading session's, recipients the sender may not address (relay/camera/addressing.py)
  or a length that disagrees with Upload-Length refuse the upload and delete its bytes.
- A PATCH with Upload-Checksum is written to a staging object first and copied into the upload
  only once its digest matched, so a mismatch (460) leaves the offset where it was.
- On completion the declared SHA-256 is checked. When one PATCH carried the whole upload from
  byte 0, its bytes were hashed as they streamed in; otherwise the stored ciphertext is read
  back once from the spool (rather than keeping a running hash between PATCHes, which would
  tie an upload to the node that holds the hash state).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal
from relay.camera.addressing import addressable_devices, required_recipients
from relay.camera.announce import Announcer
from relay.camera.errors import (
    ChecksumMismatch,
    EnvelopeRefused,
    Gone,
    UploadInterrupted,
)
from relay.camera.head_watch import HeadWatch
from relay.camera.purge import Purger
from relay.camera.records import Blob, BlobState, PurgeReason, blob_of, load_blob
from relay.camera.retention import RetentionPolicy
from relay.camera.spool.contract import Spool, SpoolObjectMissing, SpoolOffsetMismatch
from relay.camera.upload_gate import OpenGate, UploadGate
from relay.clock import Clock
from relay.ephemeral.rate_limit import RateLimit
from relay.errors import Conflict, Forbidden, NotFound, PayloadTooLarge
from relay.ids import new_id
from relay.keys.routing_view import (
    COUNT,
    FIXED_HEADER,
    MAC_LENGTH,
    MAX_HEAD_LENGTH,
    SIGNATURE_LENGTH,
    STANZA_PREFIX_LENGTH,
    STANZA_SUFFIX_LENGTH,
    TAG_LENGTH,
    MalformedEnvelope,
    RoutingView,
    UnsupportedEnvelopeVersion,
    read_routing_view,
)
from relay.messaging.membership import member_conversation
from relay.storage.database import Database
from relay.storage.tables import blob_recipients, blobs

MIN_ENVELOPE_LENGTH = (FIXED_HEADER.size + COUNT.size + STANZA_PREFIX_LENGTH + 1 + STANZA_SUFFIX_LENGTH + MAC_LENGTH
                       + TAG_LENGTH + SIGNATURE_LENGTH)
HEAD_REFUSALS = (MalformedEnvelope, UnsupportedEnvelopeVersion, EnvelopeRefused)


@dataclass(frozen=True)
class UploadState:
    id: str
    offset: int
    length: int
    expires_at: datetime
    complete: bool


def device_of(principal: Principal) -> str:
    """The caller's device; uploads and downloads need a device-bound session."""
    if principal.device_id is None:
        raise Forbidden("this needs a session bound to a device (log in with device_id)", code="device_required")
    return principal.device_id


class UploadService:
    def __init__(
        self, database: Database, audit: AuditLog, spool: Spool, clock: Clock, purger: Purger,
        announcer: Announcer, retention: RetentionPolicy, rate: RateLimit, *, max_bytes: int, window_seconds: int,
        gate: UploadGate | None = None,
    ) -> None:
        self._database = database
        self._audit = audit
        self._spool = spool
        self._clock = clock
        self._purger = purger
        self._announcer = announcer
        self._retention = retention
        self._rate = rate
        self.max_bytes = max_bytes
        self.window = timedelta(seconds=window_seconds)
        self._gate: UploadGate = gate or OpenGate()

    async def create(self, principal: Principal, *, length: int, sha256: str, conversation_id: str | None = None
                     ) -> UploadState:
        """A new upload; naming a conversation (the sender must be a member) limits its
        recipients to that conversation's devices and the tenant's EMR adapters."""
        device_id = device_of(principal)
        await self._rate.hit(device_id)
        if length > self.max_bytes:
            raise PayloadTooLarge(f"uploads are limited to {self.max_bytes} bytes", code="upload_too_large",
                                  details={"max": self.max_bytes})
        if length < MIN_ENVELOPE_LENGTH:
            raise MalformedEnvelope(f"a sealed envelope is at least {MIN_ENVELOPE_LENGTH} bytes")
        now, upload_id = self._clock.now(), new_id()
        expires_at = now + self.window
        await self._spool.create(upload_id, expires_at=expires_at)
        async with self._database.transaction() as connection:
            if conversation_id is not None:
                await member_conversation(connection, principal.tenant_id, conversation_id, principal.id)
            await self._gate.admit(connection, principal)
            await connection.execute(insert(blobs).values(
                id=upload_id, tenant_id=principal.tenant_id, sender_type=principal.type.value, sender_id=principal.id,
                sender_device_id=device_id, conversation_id=conversation_id, length=length, sha256=sha256, received=0,
                state=BlobState.UPLOADING.value, created_at=now, expires_at=expires_at,
            ))
            await self._audit.record(
                connection, AuditAction.UPLOAD_CREATED, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="blob", object_id=upload_id, details={"device_id": device_id, "length": length},
            )
        return UploadState(upload_id, 0, length, expires_at, False)

    async def state(self, principal: Principal, upload_id: str) -> UploadState:
        blob = await self._own(principal, upload_id)
        if blob.state is BlobState.COMPLETE:
            return UploadState(blob.id, blob.length, blob.length, blob.expires_at, True)
        self._require_open(blob)
        return UploadState(blob.id, await self._size(blob), blob.length, blob.expires_at, False)

    async def append(
        self, principal: Principal, upload_id: str, *, offset: int, content_length: int | None,
        chunks: AsyncIterable[bytes], checksum: tuple[str, bytes] | None,
    ) -> UploadState:
        """Write one PATCH's bytes at ``offset``; completes the upload when the last byte arrives."""
        blob = await self._own(principal, upload_id)
        if blob.state is BlobState.COMPLETE:
            raise Conflict("this upload is complete", code="upload_complete")
        self._require_open(blob)
        current = await self._size(blob)
        if offset != current:
            raise Conflict(f"the upload holds {current} bytes; PATCH at that offset", code="offset_mismatch",
                           details={"offset": current})
        room = blob.length - offset
        if content_length is not None and content_length > room:
            raise PayloadTooLarge(f"this PATCH would pass Upload-Length by {content_length - room} bytes",
                                  code="exceeds_upload_length")
        watch = None if blob.head_length is not None else HeadWatch(await self._prefix(blob, current))
        whole = WholeDigest() if offset == 0 else None
        body = _limited(chunks, room) if whole is None else whole.hashing(_limited(chunks, room))
        try:
            if checksum is None:
                size = await self._spool.append(blob.id, offset, self._watched(body, watch, blob, principal))
            else:
                size = await self._append_checked(blob, offset, body, checksum, watch, principal)
        except HEAD_REFUSALS as refusal:
            await self._refuse(blob, principal, refusal.code)
            raise
        except SpoolOffsetMismatch:
            raise Conflict("another PATCH moved this upload's offset", code="offset_mismatch") from None
        except SpoolObjectMissing:
            raise Gone("this upload has expired", code="upload_expired") from None
        except UploadInterrupted:
            await self._record_progress(blob, watch, await self._size(blob))
            raise
        if size < blob.length:
            await self._record_progress(blob, watch, size)
            return UploadState(blob.id, size, blob.length, blob.expires_at, False)
        if watch is not None and watch.view is None:
            await self._refuse(blob, principal, MalformedEnvelope.code)
            raise MalformedEnvelope("not a well-formed sealed envelope: it ends inside its head")
        try:
            await self._complete(blob, principal, await whole.hexdigest() if whole is not None else None,
                                 watch.view if watch is not None else None)
        except SpoolObjectMissing:
            await self._purger.purge(blob.tenant_id, blob.id, PurgeReason.LOST, actor=principal.actor)
            raise Gone("the relay lost this upload's bytes; upload it again", code="upload_lost") from None
        return UploadState(blob.id, size, blob.length, blob.expires_at, True)

    async def terminate(self, principal: Principal, upload_id: str) -> None:
        """tus termination: the sender withdraws an upload, finished or not, and its bytes go."""
        blob = await self._own(principal, upload_id)
        if blob.state is BlobState.UPLOADING:
            self._require_open(blob)
        await self._purger.purge(blob.tenant_id, blob.id, PurgeReason.TERMINATED,
                                 action=AuditAction.UPLOAD_TERMINATED, actor=principal.actor)

    async def _own(self, principal: Principal, upload_id: str) -> Blob:
        async with self._database.read() as connection:
            try:
                blob = await load_blob(connection, principal.tenant_id, upload_id)
            except NotFound:
                raise NotFound("no such upload", code="upload_not_found") from None
        device_id = device_of(principal)
        mine = (blob.sender_type, blob.sender_id, blob.sender_device_id) == (principal.type.value, principal.id,
                                                                             device_id)
        if not mine or blob.purge_reason == PurgeReason.TERMINATED.value:
            raise NotFound("no such upload", code="upload_not_found")
        if blob.state not in (BlobState.UPLOADING, BlobState.COMPLETE):
            raise Gone("this upload has ended", code="upload_expired" if blob.state is BlobState.EXPIRED
                       else "upload_gone")
        return blob

    def _require_open(self, blob: Blob) -> None:
        if blob.expires_at <= self._clock.now():
            raise Gone("this upload has expired", code="upload_expired")

    async def _size(self, blob: Blob) -> int:
        try:
            return await self._spool.size(blob.id)
        except SpoolObjectMissing:
            raise Gone("this upload has expired", code="upload_expired") from None

    async def _prefix(self, blob: Blob, size: int) -> bytes:
        """What has arrived of the head so far (only while the head has not been checked)."""
        return b"".join([chunk async for chunk in self._spool.read(blob.id, 0, min(size, MAX_HEAD_LENGTH))])

    async def _watched(
        self, chunks: AsyncIterable[bytes], watch: HeadWatch | None, blob: Blob, principal: Principal,
    ) -> AsyncIterator[bytes]:
        """Pass ``chunks`` through, checking the head before the bytes that complete it are written."""
        checked = watch is None
        if watch is not None and watch.view is not None:
            await self._check_envelope(watch.view, blob, principal)
            checked = True
        async for chunk in chunks:
            if not checked and watch is not None and watch.feed(chunk) is not None:
                await self._check_envelope(watch.view, blob, principal)  # type: ignore[arg-type]
                checked = True
            yield chunk

    async def _check_envelope(self, view: RoutingView, blob: Blob, principal: Principal) -> None:
        if view.sender_device_id != blob.sender_device_id:
            raise EnvelopeRefused("the envelope names another sender device than this session's",
                                  code="sender_mismatch")
        if view.total_length != blob.length:
            raise EnvelopeRefused(f"the envelope is {view.total_length} bytes, Upload-Length said {blob.length}",
                                  code="length_mismatch")
        wanted = [recipient.device_id for recipient in view.recipients]
        async with self._database.read() as connection:
            required = await required_recipients(connection, principal)
            allowed = await addressable_devices(connection, principal, wanted, blob.conversation_id)
        if required is not None and set(wanted) != required:
            raise EnvelopeRefused("the envelope must name exactly the invitation's recipients",
                                  code="recipients_mismatch")
        refused = sorted(set(wanted) - allowed)
        if refused:
            raise EnvelopeRefused("the envelope addresses devices you may not send to",
                                  code="recipient_not_addressable", details={"device_ids": refused})

    async def _append_checked(
        self, blob: Blob, offset: int, chunks: AsyncIterable[bytes], checksum: tuple[str, bytes],
        watch: HeadWatch | None, principal: Principal,
    ) -> int:
        algorithm, expected = checksum
        digest = hashlib.new(algorithm)

        async def hashed() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                digest.update(chunk)
                yield chunk

        staging = new_id()
        await self._spool.create(staging, expires_at=blob.expires_at)
        try:
            await self._spool.append(staging, 0, hashed())
            if not hmac.compare_digest(digest.digest(), expected):
                raise ChecksumMismatch("the PATCH's bytes do not match its Upload-Checksum; send them again")
            return await self._spool.append(blob.id, offset,
                                            self._watched(self._spool.read(staging), watch, blob, principal))
        finally:
            await self._spool.delete(staging)

    async def _record_progress(self, blob: Blob, watch: HeadWatch | None, size: int) -> None:
        values: dict[str, object] = {"received": size}
        if watch is not None and watch.view is not None and size >= watch.view.head_length:
            values |= {"head_length": watch.view.head_length, "envelope_id": watch.view.envelope_id}
        async with self._database.transaction() as connection:
            await connection.execute(update(blobs).where(blobs.c.id == blob.id).values(**values))

    async def _refuse(self, blob: Blob, principal: Principal, code: str) -> None:
        await self._purger.purge(blob.tenant_id, blob.id, PurgeReason.REFUSED, action=AuditAction.UPLOAD_REFUSED,
                                 actor=principal.actor, details={"code": code})

    async def _complete(self, blob: Blob, principal: Principal, streamed_sha256: str | None,
                        view: RoutingView | None) -> None:
        """Check the declared SHA-256 and hand the blob to its recipients (completing it records
        its length and head, so the last PATCH records no progress of its own).

        ``streamed_sha256`` is the digest of a PATCH that carried the whole upload from byte 0
        through this node; otherwise the stored ciphertext is read back once to hash it. ``view``
        is the head this PATCH read, if it carried the head; otherwise it is read from the spool.
        The spool object's deadline moves to the end of the retention window while the
        completing transaction runs, which commits only once it has moved.
        """
        now = self._clock.now()
        if streamed_sha256 is None:
            digest = hashlib.sha256()
            async for chunk in self._spool.read(blob.id):
                await asyncio.to_thread(digest.update, chunk)
            streamed_sha256 = digest.hexdigest()
        if not hmac.compare_digest(streamed_sha256, blob.sha256):
            await self._refuse(blob, principal, "sha256_mismatch")
            raise ChecksumMismatch("the upload does not match the SHA-256 declared for it; it was discarded",
                                   code="sha256_mismatch")
        if view is None:
            view = read_routing_view(b"".join([chunk async for chunk in self._spool.read(blob.id, 0,
                                                                                           blob.head_length)]))
        wanted = [recipient.device_id for recipient in view.recipients]
        moving: asyncio.Task[None] | None = None
        try:
            async with self._database.transaction() as connection:
                retention_until = now + await self._retention.window(connection, blob.tenant_id)
                moving = asyncio.create_task(self._spool.set_expiry(blob.id, retention_until))
                completed = await self._mark_complete(connection, blob, principal, view, now, retention_until)
                allowed = await addressable_devices(connection, principal, wanted, blob.conversation_id)
                await connection.execute(insert(blob_recipients), [
                    {"blob_id": blob.id, "device_id": device_id, "tenant_id": blob.tenant_id, "added_at": now,
                     "purged_at": None if device_id in allowed else now,
                     "purge_reason": None if device_id in allowed else PurgeReason.DEVICE_REVOKED.value}
                    for device_id in wanted
                ])
                await self._audit.record(
                    connection, AuditAction.BLOB_UPLOADED, tenant_id=blob.tenant_id, actor=principal.actor,
                    object_type="blob", object_id=blob.id,
                    details={"envelope_id": view.envelope_id, "length": blob.length, "recipients": len(wanted)},
                )
                await self._gate.completed(connection, principal, blob.id)
                await asyncio.shield(moving)
        except BaseException:
            if moving is not None:
                await asyncio.wait([moving])
            raise
        await self._gate.after_completed(principal)
        waiting = [device_id for device_id in wanted if device_id in allowed]
        if waiting:
            await self._announcer.announce(completed, waiting)
        else:
            await self._purger.purge(blob.tenant_id, blob.id, PurgeReason.DEVICE_REVOKED)

    @staticmethod
    async def _mark_complete(
        connection: AsyncConnection, blob: Blob, principal: Principal, view: RoutingView, now: datetime,
        retention_until: datetime,
    ) -> Blob:
        changed = await connection.execute(
            update(blobs).where(blobs.c.id == blob.id, blobs.c.state == BlobState.UPLOADING.value).values(
                state=BlobState.COMPLETE.value, completed_at=now, retention_until=retention_until,
                received=blob.length, head_length=view.head_length, envelope_id=view.envelope_id,
            )
        )
        if not changed.rowcount:
            raise Gone("this upload ended while it completed", code="upload_gone")
        return blob_of((await connection.execute(select(blobs).where(blobs.c.id == blob.id))).one())


class WholeDigest:
    """SHA-256 of the bytes a PATCH streams from offset 0. Each chunk is hashed in a worker
    thread (hashlib releases the GIL) while it is passed on to be written, so hashing overlaps
    with receiving and writing; chunks are still hashed one at a time, in order."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._hashing: asyncio.Future[None] | None = None

    async def hashing(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            await self._caught_up()
            self._hashing = asyncio.get_running_loop().run_in_executor(None, self._digest.update, chunk)
            yield chunk

    async def hexdigest(self) -> str:
        await self._caught_up()
        return self._digest.hexdigest()

    async def _caught_up(self) -> None:
        if self._hashing is not None:
            await asyncio.shield(self._hashing)


async def _limited(chunks: AsyncIterable[bytes], room: int) -> AsyncIterator[bytes]:
    """Pass ``chunks`` through, refusing (before writing it) a chunk that passes Upload-Length."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > room:
            raise PayloadTooLarge("the PATCH passes the Upload-Length declared at creation",
                                  code="exceeds_upload_length")
        yield chunk

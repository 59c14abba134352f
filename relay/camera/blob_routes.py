"""Delivery endpoints: what waits for the caller's device, downloads with Range, acknowledgement,
EMR rejections, the sender's status view, appending recipients, and the tenant's retention."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import Field

from relay.auth.principal import Role
from relay.camera.delivery import Download
from relay.camera.ranges import RangeNotSatisfiable, byte_range
from relay.camera.records import RejectReason
from relay.camera.retention import MAX_RETENTION, MIN_RETENTION
from relay.errors import PayloadTooLarge
from relay.http.endpoint import Call, RouteTable
from relay.http.headers import NO_STORE
from relay.http.middleware import error_response
from relay.http.schema import RequestBody, ResponseBody
from relay.keys.routing_view import MAX_HEAD_LENGTH
from relay.runtime_key import RUNTIME

routes = RouteTable("blobs")

RECIPIENTS = frozenset({Role.CLINICIAN, Role.INTEGRATION})
SENDERS = frozenset({Role.CLINICIAN})
ADAPTERS = frozenset({Role.INTEGRATION})
BLOB_PATH = "/api/v1/blobs/{blob_id}"
OCTETS = "application/octet-stream"


class WaitingBlobView(ResponseBody):
    blob_id: str
    size: int
    sender_device_id: str
    created_at: datetime
    retention_until: datetime
    downloaded: bool


class WaitingBlobs(ResponseBody):
    blobs: list[WaitingBlobView]


class Rejection(RequestBody):
    reason: RejectReason = Field(description="Why the adapter could not file the blob; the sender sees it.")


class RecipientStatus(ResponseBody):
    device_id: str
    added_at: datetime
    notified_at: datetime | None
    downloaded_at: datetime | None
    acknowledged_at: datetime | None
    rejected_at: datetime | None
    reject_reason: str | None
    purged_at: datetime | None
    purge_reason: str | None


class BlobStatusView(ResponseBody):
    blob_id: str
    state: str
    size: int
    created_at: datetime
    completed_at: datetime | None
    retention_until: datetime | None
    purged_at: datetime | None
    purge_reason: str | None
    recipients: list[RecipientStatus]


class AddedRecipients(ResponseBody):
    added: list[str]


class RetentionView(ResponseBody):
    seconds: int | None = Field(description="The tenant's own window; null when it uses the server's default.")
    effective_seconds: int


class RetentionChange(RequestBody):
    seconds: int | None = Field(ge=MIN_RETENTION, le=MAX_RETENTION,
                                description="Seconds a completed photo waits; null returns to the server's default.")


@routes.get("/api/v1/blobs", summary="Sealed blobs waiting for the caller's device", roles=RECIPIENTS,
            response=WaitingBlobs)
async def list_waiting_blobs(call: Call) -> WaitingBlobs:
    waiting = await call.request.app[RUNTIME].camera.delivery.waiting(call.caller)
    return WaitingBlobs(blobs=[WaitingBlobView(**vars(item)) for item in waiting])


@routes.get(BLOB_PATH, summary="Download a sealed blob addressed to the caller's device (Range supported)",
            roles=RECIPIENTS, produces=OCTETS)
async def download_blob(call: Call) -> web.StreamResponse:
    return await _serve(call, with_body=True)


@routes.head(BLOB_PATH, summary="A sealed blob's size and version, without its bytes", roles=RECIPIENTS,
             produces=OCTETS)
async def inspect_blob(call: Call) -> web.StreamResponse:
    return await _serve(call, with_body=False)


@routes.post(BLOB_PATH + "/ack", summary="Acknowledge a blob for the caller's device (idempotent)",
             roles=RECIPIENTS, status=204)
async def acknowledge_blob(call: Call) -> None:
    await call.request.app[RUNTIME].camera.delivery.acknowledge(call.caller, call.param("blob_id"))


@routes.post(BLOB_PATH + "/reject", summary="An EMR adapter refuses a blob with a reason code the sender sees",
             roles=ADAPTERS, body=Rejection, status=204)
async def reject_blob(call: Call[Rejection]) -> None:
    await call.request.app[RUNTIME].camera.delivery.reject(call.caller, call.param("blob_id"), call.body.reason)


@routes.get(BLOB_PATH + "/status", summary="The sender's view of a blob: each recipient's delivery state",
            roles=SENDERS, response=BlobStatusView)
async def blob_status(call: Call) -> BlobStatusView:
    status = await call.request.app[RUNTIME].camera.delivery.status(call.caller, call.param("blob_id"))
    blob = status.blob
    return BlobStatusView(
        blob_id=blob.id, state=blob.state.value, size=blob.size, created_at=blob.created_at,
        completed_at=blob.completed_at, retention_until=blob.retention_until, purged_at=blob.purged_at,
        purge_reason=blob.purge_reason, recipients=[RecipientStatus(**vars(item)) for item in status.recipients],
    )


@routes.put(BLOB_PATH + "/head", summary="Add recipients: replace the envelope's head with one that appends stanzas",
            roles=RECIPIENTS, response=AddedRecipients, raw_body=OCTETS)
async def append_recipients(call: Call) -> AddedRecipients:
    request = call.request
    if request.content_length is not None and request.content_length > MAX_HEAD_LENGTH:
        raise PayloadTooLarge(f"an envelope head is at most {MAX_HEAD_LENGTH} bytes", code="head_too_large")
    head = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        head += chunk
        if len(head) > MAX_HEAD_LENGTH:
            raise PayloadTooLarge(f"an envelope head is at most {MAX_HEAD_LENGTH} bytes", code="head_too_large")
    added = await request.app[RUNTIME].camera.heads.append_recipients(call.caller, call.param("blob_id"), bytes(head))
    return AddedRecipients(added=added)


@routes.get("/api/v1/tenant/photo-retention", summary="The tenant's photo retention window", roles=frozenset({Role.ADMIN}),
            response=RetentionView)
async def photo_retention(call: Call) -> RetentionView:
    retention = call.request.app[RUNTIME].camera.retention
    seconds = await retention.tenant_seconds(call.caller.tenant_id)
    return RetentionView(seconds=seconds, effective_seconds=retention.default_seconds if seconds is None else seconds)


@routes.put("/api/v1/tenant/photo-retention", summary="Set the tenant's photo retention window (new blobs)",
            roles=frozenset({Role.ADMIN}), body=RetentionChange, response=RetentionView)
async def set_photo_retention(call: Call[RetentionChange]) -> RetentionView:
    retention = call.request.app[RUNTIME].camera.retention
    await retention.set(call.caller, call.body.seconds)
    seconds = call.body.seconds
    return RetentionView(seconds=seconds, effective_seconds=retention.default_seconds if seconds is None else seconds)


async def _serve(call: Call, *, with_body: bool) -> web.StreamResponse:
    request = call.request
    delivery = request.app[RUNTIME].camera.delivery
    download = await delivery.open(call.caller, call.param("blob_id"))
    etag = f'"{download.version}"'
    wanted = request.headers.get("Range")
    if request.headers.get("If-Range") not in (None, etag):
        wanted = None
    try:
        chosen = byte_range(wanted, download.size)
    except RangeNotSatisfiable as error:
        response = error_response(error.status, error.code, error.message)
        response.headers["Content-Range"] = f"bytes */{download.size}"
        return response
    start, end = chosen or (0, download.size)
    response = web.StreamResponse(status=206 if chosen else 200, headers={
        "Content-Type": OCTETS, "Cache-Control": NO_STORE, "Accept-Ranges": "bytes", "ETag": etag,
    })
    if chosen:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{download.size}"
    response.content_length = end - start
    if with_body:
        await delivery.record_download(call.caller, download)
    await response.prepare(request)
    if with_body:
        await _stream(response, download, start, end)
    await response.write_eof()
    return response


async def _stream(response: web.StreamResponse, download: Download, start: int, end: int) -> None:
    async for chunk in download.read(start, end):
        await response.write(chunk)

"""The tus 1.0 endpoints under /api/v1/uploads (docs/uploads.md). Thin: read the protocol's
headers, call the upload service, answer with the protocol's headers."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from relay.auth.principal import Role
from relay.camera.errors import UploadInterrupted
from relay.camera.tus import (
    OFFSET_CONTENT_TYPE,
    UPLOADS_PATH,
    discovery_headers,
    http_date,
    non_negative,
    parse_checksum,
    require_tus_version,
    upload_metadata,
)
from relay.camera.uploads import UploadState
from relay.http.endpoint import Call, RouteTable
from relay.http.headers import NO_STORE
from relay.runtime_key import RUNTIME

routes = RouteTable("uploads")

SENDERS = frozenset({Role.CLINICIAN, Role.PATIENT})
UPLOAD_PATH = UPLOADS_PATH + "/{upload_id}"
READ_SIZE = 256 * 1024


def _progress(upload: UploadState, status: int, **extra: str) -> web.Response:
    headers = {"Upload-Offset": str(upload.offset), "Cache-Control": NO_STORE, **extra}
    if not upload.complete:
        headers["Upload-Expires"] = http_date(upload.expires_at)
    return web.Response(status=status, headers=headers)


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.content.iter_chunked(READ_SIZE):
            yield chunk
    except (ConnectionError, HttpProcessingError):
        raise UploadInterrupted("the connection ended in the middle of the PATCH") from None


@routes.options(UPLOADS_PATH, summary="tus discovery: protocol version, extensions, size limit and checksums",
                roles=None, status=204)
async def tus_discovery(call: Call) -> web.Response:
    runtime = call.request.app[RUNTIME]
    return web.Response(status=204, headers=discovery_headers(runtime.settings.max_upload_bytes))


@routes.post(UPLOADS_PATH, summary="Create a tus upload for one sealed envelope (Upload-Length, Upload-Metadata sha256)",
             roles=SENDERS, status=201)
async def create_upload(call: Call) -> web.Response:
    request = call.request
    require_tus_version(request)
    length = non_negative(request, "Upload-Length")
    metadata = upload_metadata(request.headers.get("Upload-Metadata"))
    upload = await request.app[RUNTIME].camera.uploads.create(
        call.caller, length=length, sha256=metadata.sha256, conversation_id=metadata.conversation_id
    )
    return web.Response(status=201, headers={
        "Location": f"{UPLOADS_PATH}/{upload.id}", "Upload-Expires": http_date(upload.expires_at),
        "Upload-Offset": "0",
    })


@routes.head(UPLOAD_PATH, summary="tus: how many bytes of the upload the relay holds", roles=SENDERS)
async def upload_offset(call: Call) -> web.Response:
    require_tus_version(call.request)
    upload = await call.request.app[RUNTIME].camera.uploads.state(call.caller, call.param("upload_id"))
    return _progress(upload, 200, **{"Upload-Length": str(upload.length)})


@routes.patch(UPLOAD_PATH, summary="tus: append bytes at Upload-Offset (optionally with Upload-Checksum sha256)",
              roles=SENDERS, status=204, raw_body=OFFSET_CONTENT_TYPE)
async def upload_bytes(call: Call) -> web.Response:
    request = call.request
    require_tus_version(request)
    offset = non_negative(request, "Upload-Offset")
    checksum = parse_checksum(request.headers.get("Upload-Checksum"))
    upload = await request.app[RUNTIME].camera.uploads.append(
        call.caller, call.param("upload_id"), offset=offset, content_length=request.content_length,
        chunks=_body(request), checksum=checksum,
    )
    return _progress(upload, 204)


@routes.delete(UPLOAD_PATH, summary="tus termination: withdraw the upload and delete its bytes", roles=SENDERS,
               status=204)
async def terminate_upload(call: Call) -> web.Response:
    require_tus_version(call.request)
    await call.request.app[RUNTIME].camera.uploads.terminate(call.caller, call.param("upload_id"))
    return web.Response(status=204)

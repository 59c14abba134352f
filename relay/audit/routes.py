"""REST endpoints for the auditor (and only the auditor): the tenant's audit events, verification
of the chain, and exports after a recent re-authentication."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, Field, model_validator

from relay.audit.actions import AuditAction
from relay.audit.export import MEDIA_TYPE
from relay.audit.reader import AuditEvent, EventFilter
from relay.audit.verify import Anchor, Tampering
from relay.auth.principal import Role
from relay.http.endpoint import Call, RouteTable
from relay.http.schema import QueryParams, ResponseBody
from relay.runtime_key import RUNTIME

routes = RouteTable("audit")
AUDITOR = frozenset({Role.AUDITOR})
MAX_PAGE = 500
WRITE_CHUNK = 65536


class TimeRange(QueryParams):
    since: AwareDatetime | None = Field(None, description="Only events at or after this time (ISO 8601 with zone).")
    until: AwareDatetime | None = Field(None, description="Only events before this time (ISO 8601 with zone).")

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be earlier than until")
        return self


class EventsQuery(TimeRange):
    after: int = Field(0, ge=0, description="Cursor: only events with a seq above this (the previous page's next_after).")
    through: int | None = Field(None, ge=0, description="Only events up to this seq (the first page's through).")
    limit: int = Field(100, ge=1, le=MAX_PAGE, description=f"Events per page, at most {MAX_PAGE}.")
    action: AuditAction | None = Field(None, description="Only this action, e.g. auth.login.")
    actor_id: str | None = Field(None, min_length=1, max_length=64, description="Only events by this actor id.")
    object_id: str | None = Field(None, min_length=1, max_length=64, description="Only events about this object id.")
    outcome: Literal["success", "failure"] | None = Field(None, description="Only this outcome.")


class VerifyQuery(QueryParams):
    anchor: str | None = Field(None, pattern=r"^\d{1,19}:[0-9a-f]{16,64}$",
                               description="SEQ:HASH of a head recorded earlier outside Relay; it must still match.")


class AuditEventView(ResponseBody):
    seq: int
    occurred_at: datetime
    tenant_id: str | None
    actor_type: str
    actor_id: str | None
    action: str
    object_type: str | None
    object_id: str | None
    outcome: str
    details: dict[str, Any] | str
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventView:
        try:
            details: dict[str, Any] | str = json.loads(event.details)
        except ValueError:
            details = event.details
        if not isinstance(details, dict):
            details = event.details
        return cls(seq=event.seq, occurred_at=event.occurred_at, tenant_id=event.tenant_id,
                   actor_type=event.actor_type, actor_id=event.actor_id, action=event.action,
                   object_type=event.object_type, object_id=event.object_id, outcome=event.outcome,
                   details=details, prev_hash=event.prev_hash, hash=event.hash)


class EventPageView(ResponseBody):
    events: list[AuditEventView]
    next_after: int | None = Field(description="Pass as `after` (with `through`) for the next page; null at the end.")
    through: int = Field(description="The newest seq this page (and the pages after it) can show.")


class VerificationView(ResponseBody):
    """The whole server's chain, described by seqs and kinds only: no other tenant's rows leak."""

    intact: bool
    rows: int
    head_seq: int | None
    head: str = Field(description="SEQ:HASH prefix of the head, to record outside Relay and pass back as anchor.")
    finding_count: int
    first_bad_seq: int | None
    kinds: list[Tampering]


@routes.get("/api/v1/audit/events", summary="The tenant's audit events, oldest first, a page at a time",
            roles=AUDITOR, query=EventsQuery, response=EventPageView)
async def list_events(call: Call[EventsQuery]) -> EventPageView:
    query = call.body
    event_filter = EventFilter(since=query.since, until=query.until, action=query.action.value if query.action else None,
                               actor_id=query.actor_id, object_id=query.object_id, outcome=query.outcome)
    page = await call.request.app[RUNTIME].audit_reader.events(
        call.caller, event_filter, after=query.after, limit=query.limit, through=query.through
    )
    return EventPageView(events=[AuditEventView.of(event) for event in page.events], next_after=page.next_after,
                         through=page.through)


@routes.get("/api/v1/audit/verify", summary="Verify the whole audit chain (reports seqs and kinds only)",
            roles=AUDITOR, query=VerifyQuery, response=VerificationView)
async def verify(call: Call[VerifyQuery]) -> VerificationView:
    anchors = (Anchor.parse(call.body.anchor),) if call.body.anchor else ()
    result = await call.request.app[RUNTIME].audit_reader.verify(
        actor=call.caller.actor, tenant_id=call.caller.tenant_id, anchors=anchors
    )
    return VerificationView(intact=result.intact, rows=result.rows, head_seq=result.head_seq, head=result.head_label,
                            finding_count=result.finding_count, first_bad_seq=result.first_bad_seq,
                            kinds=sorted({finding.kind for finding in result.findings}))


@routes.get("/api/v1/audit/export", summary="Download the tenant's audit events as JSON lines (re-authenticate first)",
            roles=AUDITOR, query=TimeRange, produces=MEDIA_TYPE)
async def export(call: Call[TimeRange]) -> web.StreamResponse:
    runtime = call.request.app[RUNTIME]
    runtime.login.require_recent_reauth(call.caller)
    started = await runtime.audit_reader.export(
        actor=call.caller.actor, tenant_id=call.caller.tenant_id,
        event_filter=EventFilter(since=call.body.since, until=call.body.until),
    )
    response = web.StreamResponse(headers={
        "Content-Type": MEDIA_TYPE,
        "Content-Disposition": f'attachment; filename="audit-export-{started.seq}.jsonl"',
    })
    await response.prepare(call.request)
    chunk = bytearray()
    try:
        async for line in started.lines:
            chunk += line.encode()
            if len(chunk) >= WRITE_CHUNK:
                await response.write(bytes(chunk))
                chunk.clear()
        await response.write(bytes(chunk))
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away mid-download; the export stays recorded
    return response

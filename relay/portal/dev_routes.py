"""GET /api/v1/dev/outbox: what the development mail server received (embedded defaults only:
with smtp_host set there is no such server and the endpoint answers 404)."""

from __future__ import annotations

from datetime import datetime

from relay.auth.principal import Role
from relay.errors import NotFound
from relay.http.endpoint import Call, RouteTable
from relay.http.schema import ResponseBody
from relay.runtime_key import RUNTIME

routes = RouteTable("development")


class OutboxEntry(ResponseBody):
    to: list[str]
    subject: str
    body: str
    received_at: datetime


class OutboxView(ResponseBody):
    messages: list[OutboxEntry]


@routes.get("/api/v1/dev/outbox", summary="The caller's tenant's messages the development mail server received, "
            "newest first",
            roles=frozenset({Role.ADMIN}), response=OutboxView)
async def dev_outbox(call: Call) -> OutboxView:
    dev_mail = call.request.app[RUNTIME].portal.dev_mail
    if dev_mail is None:
        raise NotFound("there is no development mail server: smtp_host is set", code="no_dev_mail")
    return OutboxView(messages=[
        OutboxEntry(to=list(message.to), subject=message.subject, body=message.body, received_at=message.received_at)
        for message in reversed(dev_mail.outbox.messages) if message.tenant_id == call.caller.tenant_id
    ])

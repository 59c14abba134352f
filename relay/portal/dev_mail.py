"""The development mail server: with no smtp_host configured, `relay serve` runs an aiosmtpd
server on loopback and keeps the last messages it received in memory, for admins to read at
GET /api/v1/dev/outbox, so invitations work end to end on a laptop with no accounts anywhere.

aiosmtpd logs each SMTP command (recipients included) to the ``mail.log`` logger at INFO; that
logger is raised to WARNING while the server runs, since addresses are PHI (docs/logging.md)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from relay.clock import Clock
from relay.portal.mailer import TENANT_HEADER

HOST = "127.0.0.1"
KEEP = 100
MAX_MESSAGE = 64 * 1024


@dataclass(frozen=True)
class OutboxMessage:
    tenant_id: str
    to: tuple[str, ...]
    subject: str
    body: str
    received_at: datetime


class Outbox:
    """The aiosmtpd handler: parses each message and keeps the last ``KEEP``."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.messages: deque[OutboxMessage] = deque(maxlen=KEEP)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed: Any = message_from_bytes(content, policy=policy.default)
        body = parsed.get_body(preferencelist=("plain",))
        self.messages.append(OutboxMessage(
            str(parsed.get(TENANT_HEADER, "")), tuple(envelope.rcpt_tos), str(parsed.get("Subject", "")),
            body.get_content() if body is not None else "", self._clock.now(),
        ))
        return "250 Message accepted for delivery"


class DevMailServer:
    def __init__(self, clock: Clock, port: int) -> None:
        self.outbox = Outbox(clock)
        self._port = port
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self.outbox, hostname="relay-dev-mail", data_size_limit=MAX_MESSAGE), HOST, self._port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

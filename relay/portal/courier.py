"""Sends an invitation's messages (its link, a one-time code) to the patient's contact over the
invitation's channel. The texts come from templates.py and carry no PHI."""

from __future__ import annotations

from relay.errors import InvalidRequest
from relay.portal.mailer import Mailer
from relay.portal.records import Channel
from relay.portal.sms import SmsSender


class Courier:
    def __init__(self, mailer: Mailer, sms: SmsSender | None) -> None:
        self._mailer = mailer
        self._sms = sms

    def require(self, channel: Channel) -> None:
        """InvalidRequest (``channel_unavailable``) when ``channel`` is not configured."""
        if channel is Channel.SMS and self._sms is None:
            raise InvalidRequest("this relay has no SMS provider configured; invite by e-mail",
                                 code="channel_unavailable")

    async def send(self, channel: Channel, contact: str, *, subject: str, body: str, tenant_id: str) -> None:
        self.require(channel)
        if channel is Channel.EMAIL:
            await self._mailer.send(contact, subject, body, tenant_id=tenant_id)
        else:
            assert self._sms is not None
            await self._sms.send(contact, body)

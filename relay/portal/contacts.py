"""A patient's contact as an invitation accepts it: an e-mail address or an E.164 number.
Refusals never echo the value (it is PHI)."""

from __future__ import annotations

import re

from relay.errors import InvalidRequest
from relay.portal.records import Channel

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
MAX_EMAIL = 254


def normalized_contact(channel: Channel, contact: str) -> str:
    """The contact as it will be stored and used, or InvalidRequest (``invalid_contact``)."""
    value = contact.strip()
    if channel is Channel.EMAIL:
        if len(value) > MAX_EMAIL or not _EMAIL.fullmatch(value):
            raise InvalidRequest("contact must be an e-mail address", code="invalid_contact")
        return value
    if not _E164.fullmatch(value):
        raise InvalidRequest("contact must be a mobile number in E.164 form, e.g. +447700900123",
                             code="invalid_contact")
    return value

"""E-mail through SMTP (aiosmtplib). STARTTLS is required for every server not on loopback
(aiosmtplib fails the send if the server does not offer it, and settings refuse turning it
off); on loopback it is used when the server offers it, or never when smtp_starttls is off."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from relay.portal.errors import DeliveryUnavailable
from relay.settings import is_loopback

SEND_TIMEOUT = 30
TENANT_HEADER = "X-Relay-Tenant"
"""The sending tenant's opaque id, so the development outbox shows each tenant only its own mail."""


class Mailer:
    def __init__(self, *, host: str, port: int, mail_from: str, username: str | None = None,
                 password: str | None = None, starttls: bool = True) -> None:
        self.host = host
        self.port = port
        self._mail_from = mail_from
        self._username = username
        self._password = password
        self._start_tls: bool | None = True if not is_loopback(host) else (None if starttls else False)

    async def send(self, to: str, subject: str, body: str, *, tenant_id: str) -> None:
        message = EmailMessage()
        message[TENANT_HEADER] = tenant_id
        message["From"] = self._mail_from
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        try:
            await aiosmtplib.send(
                message, hostname=self.host, port=self.port, username=self._username, password=self._password,
                start_tls=self._start_tls, timeout=SEND_TIMEOUT,
            )
        except aiosmtplib.SMTPException as error:
            raise DeliveryUnavailable(f"the mail server refused the message ({type(error).__name__})") from None
        except OSError:
            raise DeliveryUnavailable("the mail server cannot be reached") from None

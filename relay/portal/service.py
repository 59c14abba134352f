"""The patient portal's services, built together from their explicit dependencies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from relay.audit.log import AuditLog
from relay.clock import Clock
from relay.ephemeral.contract import EphemeralStore
from relay.ephemeral.rate_limit import RateLimit
from relay.keys.devices import DeviceService
from relay.keys.keyring import Keyring
from relay.messaging.notifier import Notifier
from relay.portal.courier import Courier
from relay.portal.dev_mail import HOST as DEV_MAIL_HOST
from relay.portal.dev_mail import DevMailServer
from relay.portal.invitations import InvitationService
from relay.portal.lifecycle import Lifecycle
from relay.portal.mailer import Mailer
from relay.portal.patient import PatientSteps
from relay.portal.sessions import PortalSessions
from relay.portal.sms import SmsSender
from relay.portal.uploads import PortalUploadGate
from relay.portal.verification import Verification
from relay.settings import Settings
from relay.storage.database import Database

CODES_PER_WINDOW, CODE_WINDOW = 3, 600


@dataclass(frozen=True)
class Portal:
    notifier: Notifier
    lifecycle: Lifecycle
    invitations: InvitationService
    sessions: PortalSessions
    verification: Verification
    patient: PatientSteps
    upload_gate: PortalUploadGate
    dev_mail: DevMailServer | None


def mailer_for(settings: Settings, dev_mail: DevMailServer | None) -> Mailer:
    if dev_mail is not None:
        return Mailer(host=DEV_MAIL_HOST, port=dev_mail.port, mail_from=settings.mail_from, starttls=False)
    assert settings.smtp_host is not None
    return Mailer(host=settings.smtp_host, port=settings.smtp_port, mail_from=settings.mail_from,
                  username=settings.smtp_username, password=settings.smtp_password, starttls=settings.smtp_starttls)


def sms_for(settings: Settings) -> SmsSender | None:
    if not (settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from_number):
        return None
    return SmsSender(account_sid=settings.twilio_account_sid, auth_token=settings.twilio_auth_token,
                     from_number=settings.twilio_from_number, api_base_url=settings.twilio_api_base_url)


@contextlib.asynccontextmanager
async def open_portal(database: Database, audit: AuditLog, keyring: Keyring, ephemeral: EphemeralStore,
                      devices: DeviceService, clock: Clock, settings: Settings) -> AsyncIterator[Portal]:
    """Build the services; with no smtp_host, run the development mail server while open."""
    dev_mail = None if settings.smtp_host else DevMailServer(clock, settings.dev_mail_port)
    if dev_mail is not None:
        await dev_mail.start()
    try:
        notifier = Notifier()
        lifecycle = Lifecycle(database, audit, notifier, clock)
        courier = Courier(mailer_for(settings, dev_mail), sms_for(settings))
        sessions = PortalSessions(database, audit, lifecycle, clock)
        code_rate = RateLimit(ephemeral, clock, name="portal-code", limit=CODES_PER_WINDOW, window=CODE_WINDOW,
                              message="too many codes asked for; wait a few minutes")
        yield Portal(
            notifier=notifier,
            lifecycle=lifecycle,
            invitations=InvitationService(database, audit, keyring, courier, lifecycle, clock,
                                          public_url=settings.effective_public_url,
                                          default_lifetime=settings.portal_invitation_lifetime),
            sessions=sessions,
            verification=Verification(database, audit, keyring, courier, lifecycle, code_rate, clock),
            patient=PatientSteps(database, audit, keyring, sessions, devices, clock),
            upload_gate=PortalUploadGate(audit, lifecycle, clock),
            dev_mail=dev_mail,
        )
    finally:
        if dev_mail is not None:
            await dev_mail.close()

"""What a verified portal session does before it uploads: read the recipients' key bundle and
the clinician's sealed note, record the consent's id and hash, and register the page's
ephemeral sender device."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal
from relay.clock import Clock
from relay.errors import Conflict, Forbidden
from relay.keys.devices import Device, DeviceService
from relay.keys.keyring import Keyring
from relay.keys.sealed_columns import INVITATION_NOTE
from relay.keys.signatures import SignedKey
from relay.portal.errors import NotVerified
from relay.portal.records import Invitation, load_invitation
from relay.portal.sessions import PortalSession, PortalSessions
from relay.storage.database import Database
from relay.storage.tables import invitations, portal_sessions

DEVICE_NAME = "patient portal"


@dataclass(frozen=True)
class RecipientKeys:
    device_id: str
    identity_key: bytes
    encryption_key: SignedKey


@dataclass(frozen=True)
class KeyBundle:
    """What the page needs to seal: the recipients' keys and the note sealed under the link's secret."""

    recipients: list[RecipientKeys]
    sealed_note: bytes | None


class PatientSteps:
    def __init__(self, database: Database, audit: AuditLog, keyring: Keyring, sessions: PortalSessions,
                 devices: DeviceService, clock: Clock) -> None:
        self._database = database
        self._audit = audit
        self._keyring = keyring
        self._sessions = sessions
        self._devices = devices
        self._clock = clock

    async def recipients(self, principal: Principal) -> KeyBundle:
        """The invitation's recipients' current keys, for the page to check against the link's
        commitment, and the sealed note: only once verified, as the note may name the patient."""
        await self._verified(principal)
        async with self._database.read() as connection:
            invitation = await load_invitation(connection, principal.tenant_id, principal.id)
            found = await DeviceService.active(connection, principal.tenant_id, invitation.recipient_device_ids)
            note = await connection.scalar(select(invitations.c.sealed_note).where(invitations.c.id == invitation.id))
        return KeyBundle([RecipientKeys(device.id, device.identity_key, device.encryption_key)
                          for device in sorted(found, key=lambda device: device.id)],
                         None if note is None else self._keyring.open_sealed(note, INVITATION_NOTE.context(invitation.id)))

    async def record_consent(self, principal: Principal, consent_id: str, consent_sha256: str) -> Invitation:
        await self._verified(principal)
        async with self._database.transaction() as connection:
            await connection.execute(update(invitations).where(invitations.c.id == principal.id).values(
                consent_id=consent_id, consent_sha256=consent_sha256, updated_at=self._clock.now()))
            await self._audit.record(connection, AuditAction.INVITATION_CONSENT_RECORDED,
                                     tenant_id=principal.tenant_id, actor=principal.actor, object_type="invitation",
                                     object_id=principal.id, details={"consent_id": consent_id})
            return await load_invitation(connection, principal.tenant_id, principal.id)

    async def register_device(self, principal: Principal, identity_key: bytes, encryption_key: SignedKey) -> Device:
        """The page's sender device, owned by the invitation; one per session, after consent."""
        session = await self._verified(principal)
        if session.device_id is not None:
            raise Conflict("this session already has its device", code="device_already_registered")
        async with self._database.read() as connection:
            invitation = await load_invitation(connection, principal.tenant_id, principal.id)
        if invitation.consent_id is None:
            raise Forbidden("record the patient's consent first", code="consent_required")
        device = await self._devices.register(principal, name=DEVICE_NAME, identity_key=identity_key,
                                              encryption_key=encryption_key)
        async with self._database.transaction() as connection:
            await connection.execute(update(portal_sessions).where(portal_sessions.c.id == principal.session_id)
                                     .values(device_id=device.id))
        return device

    async def _verified(self, principal: Principal) -> PortalSession:
        session = await self._sessions.session(principal)
        if not session.verified:
            raise NotVerified()
        return session

"""Clinicians' side of invitations: create and send, list, read, resend with a new secret,
revoke. The link's secret and key commitment come from the clinician's client; the relay keeps
only the secret's SHA-256 and forgets the link once it is sent (docs/portal.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal, PrincipalType, Role
from relay.clock import Clock
from relay.errors import Forbidden, InvalidRequest
from relay.ids import new_id, token_hash
from relay.keys.keyring import Keyring
from relay.keys.sealed_columns import INVITATION_CONTACT, INVITATION_DATE_OF_BIRTH, INVITATION_NOTE
from relay.portal.contacts import normalized_contact
from relay.portal.courier import Courier
from relay.portal.errors import DeliveryUnavailable
from relay.portal.lifecycle import Lifecycle, refusal
from relay.portal.records import ENDED, Channel, Invitation, Method, Status, invitation_of, load_invitation
from relay.portal.templates import render, require_template, subject
from relay.storage.database import Database
from relay.storage.tables import devices, integrations, invitations, tenants, users

MIN_LIFETIME, MAX_LIFETIME = 300, 30 * 86400


@dataclass(frozen=True)
class Link:
    """What the clinician's client chose for one link: its secret, the key commitment and the sealed note."""

    secret: str
    commitment: str
    sealed_note: bytes | None


@dataclass(frozen=True)
class NewInvitation:
    channel: Channel
    contact: str
    method: Method
    date_of_birth: date | None
    recipient_device_ids: tuple[str, ...]
    link: Link
    expires_in: int | None = None
    max_uploads: int = 5
    template: str = "standard"


async def receiving_devices(connection: AsyncConnection, tenant_id: str, device_ids: tuple[str, ...]) -> set[str]:
    """The subset of ``device_ids`` that may receive a patient's photos: active devices of the
    tenant's enabled users and EMR adapters (never another invitation's portal device)."""
    rows = await connection.execute(
        select(devices.c.id)
        .outerjoin(users, and_(devices.c.owner_type == PrincipalType.USER.value, users.c.id == devices.c.owner_id,
                               users.c.tenant_id == devices.c.tenant_id))
        .outerjoin(integrations, and_(devices.c.owner_type == PrincipalType.INTEGRATION.value,
                                      integrations.c.id == devices.c.owner_id,
                                      integrations.c.tenant_id == devices.c.tenant_id))
        .where(devices.c.tenant_id == tenant_id, devices.c.id.in_(list(device_ids)), devices.c.revoked_at.is_(None),
               or_(users.c.disabled.is_(False), integrations.c.disabled.is_(False)))
    )
    return set(rows.scalars())


class InvitationService:
    def __init__(self, database: Database, audit: AuditLog, keyring: Keyring, courier: Courier, lifecycle: Lifecycle,
                 clock: Clock, *, public_url: str, default_lifetime: int) -> None:
        self._database = database
        self._audit = audit
        self._keyring = keyring
        self._courier = courier
        self._lifecycle = lifecycle
        self._clock = clock
        self._public_url = public_url.rstrip("/")
        self.default_lifetime = default_lifetime

    async def create(self, principal: Principal, new: NewInvitation) -> Invitation:
        contact = normalized_contact(new.channel, new.contact)
        self._courier.require(new.channel)
        lifetime = new.expires_in if new.expires_in is not None else self.default_lifetime
        if not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
            raise InvalidRequest(f"expires_in must be {MIN_LIFETIME} to {MAX_LIFETIME} seconds", code="invalid_expiry")
        if (new.method is Method.DATE_OF_BIRTH) != (new.date_of_birth is not None):
            raise InvalidRequest("date_of_birth goes with (and only with) the date_of_birth method",
                                 code="invalid_verification")
        recipients = tuple(sorted(set(new.recipient_device_ids)))
        now, invitation_id = self._clock.now(), new_id()
        require_template(new.template)
        async with self._database.transaction() as connection:
            allowed = await receiving_devices(connection, principal.tenant_id, recipients)
            refused = sorted(set(recipients) - allowed)
            if refused:
                raise InvalidRequest("these devices cannot receive the patient's photos", code="invalid_recipients",
                                     details={"device_ids": refused})
            await connection.execute(insert(invitations).values(
                id=invitation_id, tenant_id=principal.tenant_id, created_by=principal.id, channel=new.channel.value,
                contact=self._keyring.seal(contact.encode(), INVITATION_CONTACT.context(invitation_id)),
                verification_method=new.method.value,
                date_of_birth=None if new.date_of_birth is None else self._keyring.seal(
                    new.date_of_birth.isoformat().encode(), INVITATION_DATE_OF_BIRTH.context(invitation_id)),
                sealed_note=self._sealed_note(invitation_id, new.link.sealed_note), template=new.template,
                secret_hash=token_hash(new.link.secret), key_commitment=new.link.commitment,
                recipient_device_ids=json.dumps(list(recipients)), status=Status.SENT.value, failed_attempts=0,
                max_uploads=new.max_uploads, uploads_used=0, created_at=now, updated_at=now,
                expires_at=now + timedelta(seconds=lifetime),
            ))
            await self._audit.record(
                connection, AuditAction.INVITATION_CREATED, tenant_id=principal.tenant_id, actor=principal.actor,
                object_type="invitation", object_id=invitation_id,
                details={"channel": new.channel.value, "method": new.method.value, "recipients": len(recipients),
                         "max_uploads": new.max_uploads, "expires_in": lifetime},
            )
            invitation = await load_invitation(connection, principal.tenant_id, invitation_id)
        try:
            await self._send_link(principal, invitation, contact, new.link, AuditAction.INVITATION_SENT)
        except DeliveryUnavailable:
            await self._withdraw(invitation)
            raise
        return invitation

    async def list(self, principal: Principal) -> list[Invitation]:
        """The caller's invitations, newest first; an admin sees the tenant's."""
        query = select(invitations).where(invitations.c.tenant_id == principal.tenant_id)
        if principal.role is not Role.ADMIN:
            query = query.where(invitations.c.created_by == principal.id)
        async with self._database.read() as connection:
            rows = await connection.execute(query.order_by(invitations.c.created_at.desc(), invitations.c.id))
            found = [invitation_of(row) for row in rows]
        return [await self._lifecycle.expire_if_due(invitation) for invitation in found]

    async def get(self, principal: Principal, invitation_id: str) -> Invitation:
        async with self._database.read() as connection:
            invitation = await load_invitation(connection, principal.tenant_id, invitation_id)
        self._require_visible(principal, invitation)
        return await self._lifecycle.expire_if_due(invitation)

    async def resend(self, principal: Principal, invitation_id: str, link: Link) -> Invitation:
        """Send a new link (new secret and commitment); the old link and its sessions stop working."""
        invitation = await self.get(principal, invitation_id)
        problem = refusal(invitation)
        if problem is not None:
            raise problem
        now = self._clock.now()
        async with self._database.transaction() as connection:
            row = (await connection.execute(select(invitations.c.contact).where(
                invitations.c.id == invitation_id).with_for_update())).one()
            await connection.execute(update(invitations).where(invitations.c.id == invitation_id).values(
                secret_hash=token_hash(link.secret), key_commitment=link.commitment,
                sealed_note=self._sealed_note(invitation_id, link.sealed_note), updated_at=now))
            invitation = await load_invitation(connection, principal.tenant_id, invitation_id)
        contact = self._keyring.open_sealed(row.contact, INVITATION_CONTACT.context(invitation_id)).decode()
        await self._send_link(principal, invitation, contact, link, AuditAction.INVITATION_RESENT)
        return invitation

    async def revoke(self, principal: Principal, invitation_id: str) -> Invitation:
        invitation = await self.get(principal, invitation_id)
        async with self._database.transaction() as connection:
            current = await load_invitation(connection, principal.tenant_id, invitation_id, lock=True)
            if current.status in ENDED:
                return current
            await self._lifecycle.end(connection, current, Status.REVOKED, principal.actor)
            invitation = await load_invitation(connection, principal.tenant_id, invitation_id)
        await self._lifecycle.notify(invitation)
        return invitation

    async def _withdraw(self, invitation: Invitation) -> None:
        """A link that never went out: the invitation ends (revoked, by the system) and its
        contact data is deleted at once; the clinician may create it again."""
        async with self._database.transaction() as connection:
            await self._lifecycle.end(connection, invitation, Status.REVOKED, ("system", None))
            ended = await load_invitation(connection, invitation.tenant_id, invitation.id)
        await self._lifecycle.notify(ended)

    def link_of(self, invitation: Invitation, link: Link) -> str:
        return f"{self._public_url}/p/{invitation.id}#{link.secret}.{link.commitment}"

    @staticmethod
    def _require_visible(principal: Principal, invitation: Invitation) -> None:
        if principal.role is not Role.ADMIN and invitation.created_by != principal.id:
            raise Forbidden("only the invitation's creator or an admin may do this", code="not_invitation_creator")

    def _sealed_note(self, invitation_id: str, note: bytes | None) -> bytes | None:
        return None if note is None else self._keyring.seal(note, INVITATION_NOTE.context(invitation_id))

    async def _send_link(self, principal: Principal, invitation: Invitation, contact: str, link: Link,
                         action: AuditAction) -> None:
        async with self._database.read() as connection:
            organization = await connection.scalar(select(tenants.c.name).where(
                tenants.c.id == invitation.tenant_id))
        body = render(invitation.template, organization=organization, link=self.link_of(invitation, link))
        await self._courier.send(invitation.channel, contact, subject=subject(organization=organization), body=body,
                                 tenant_id=invitation.tenant_id)
        async with self._database.transaction() as connection:
            await self._audit.record(connection, action, tenant_id=invitation.tenant_id, actor=principal.actor,
                                     object_type="invitation", object_id=invitation.id,
                                     details={"channel": invitation.channel.value})
        await self._lifecycle.notify(invitation)


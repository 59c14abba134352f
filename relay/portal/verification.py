"""Proving who the patient is: a 6-digit one-time code sent to the contact (valid 10 minutes,
kept sealed under the key-encryption keys, single use) or the date of birth the clinician
entered. Five wrong answers lock the invitation for good and its creator is told; every
later answer, right or wrong, gets 423."""

from __future__ import annotations

import hmac
import secrets
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import Principal
from relay.clock import Clock
from relay.ephemeral.rate_limit import RateLimit
from relay.errors import InvalidRequest
from relay.keys.keyring import Keyring
from relay.keys.sealed_columns import INVITATION_CODE, INVITATION_CONTACT, INVITATION_DATE_OF_BIRTH
from relay.portal.courier import Courier
from relay.portal.errors import InvitationLocked, VerificationFailed
from relay.portal.lifecycle import Lifecycle
from relay.portal.records import MAX_ATTEMPTS, Method, Status, load_invitation
from relay.portal.templates import code_message, subject
from relay.storage.database import Database
from relay.storage.tables import invitations, portal_sessions, tenants

CODE_LIFETIME = timedelta(minutes=10)
CODE_DIGITS = 6


class Verification:
    def __init__(self, database: Database, audit: AuditLog, keyring: Keyring, courier: Courier, lifecycle: Lifecycle,
                 code_rate: RateLimit, clock: Clock) -> None:
        self._database = database
        self._audit = audit
        self._keyring = keyring
        self._courier = courier
        self._lifecycle = lifecycle
        self._code_rate = code_rate
        self._clock = clock

    async def send_code(self, principal: Principal) -> None:
        """Send a new code to the contact; the previous one stops working."""
        await self._code_rate.hit(principal.id)
        now = self._clock.now()
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        async with self._database.transaction() as connection:
            invitation = await load_invitation(connection, principal.tenant_id, principal.id, lock=True)
            if invitation.verification_method is not Method.CODE:
                raise InvalidRequest("this invitation is verified by date of birth", code="wrong_method")
            if invitation.status is Status.LOCKED:
                raise InvitationLocked()
            row = (await connection.execute(select(invitations.c.contact, tenants.c.name).join(
                tenants, tenants.c.id == invitations.c.tenant_id).where(invitations.c.id == invitation.id))).one()
            await connection.execute(update(invitations).where(invitations.c.id == invitation.id).values(
                code=self._keyring.seal(code.encode(), INVITATION_CODE.context(invitation.id)),
                code_expires_at=now + CODE_LIFETIME, updated_at=now))
            await self._audit.record(connection, AuditAction.INVITATION_CODE_SENT, tenant_id=invitation.tenant_id,
                                     actor=principal.actor, object_type="invitation", object_id=invitation.id)
        contact = self._keyring.open_sealed(row.contact, INVITATION_CONTACT.context(invitation.id)).decode()
        await self._courier.send(invitation.channel, contact, subject=subject(organization=row.name),
                                 body=code_message(organization=row.name, code=code), tenant_id=invitation.tenant_id)

    async def verify(self, principal: Principal, *, code: str | None, date_of_birth: date | None) -> None:
        """Mark the session verified, or count a failure (VerificationFailed; locks at the fifth)."""
        now = self._clock.now()
        async with self._database.transaction() as connection:
            invitation = await load_invitation(connection, principal.tenant_id, principal.id, lock=True)
            if invitation.status is Status.LOCKED or invitation.failed_attempts >= MAX_ATTEMPTS:
                raise InvitationLocked()
            row = (await connection.execute(select(invitations.c.code, invitations.c.code_expires_at,
                                                   invitations.c.date_of_birth)
                                            .where(invitations.c.id == invitation.id))).one()
            right = self._right(invitation.id, invitation.verification_method, row, code, date_of_birth, now)
            if right:
                await connection.execute(update(portal_sessions).where(portal_sessions.c.id == principal.session_id)
                                         .values(verified_at=now))
                await connection.execute(update(invitations).where(invitations.c.id == invitation.id).values(
                    status=Status.VERIFIED.value, code=None, code_expires_at=None, updated_at=now))
                await self._audit.record(connection, AuditAction.INVITATION_VERIFIED, tenant_id=invitation.tenant_id,
                                         actor=principal.actor, object_type="invitation", object_id=invitation.id,
                                         details={"method": invitation.verification_method.value})
            else:
                failures = invitation.failed_attempts + 1
                locked = failures >= MAX_ATTEMPTS
                await connection.execute(update(invitations).where(invitations.c.id == invitation.id).values(
                    failed_attempts=failures, updated_at=now,
                    **({"status": Status.LOCKED.value, "code": None, "code_expires_at": None} if locked else {})))
                await self._audit.record(
                    connection, AuditAction.INVITATION_VERIFICATION_FAILED, tenant_id=invitation.tenant_id,
                    actor=principal.actor, object_type="invitation", object_id=invitation.id, outcome="failure",
                    details={"attempt": failures},
                )
                if locked:
                    await self._audit.record(connection, AuditAction.INVITATION_LOCKED, tenant_id=invitation.tenant_id,
                                             actor=principal.actor, object_type="invitation", object_id=invitation.id,
                                             details={"attempts": failures})
        if right or locked:
            await self._lifecycle.notify_id(invitation.id)
        if not right:
            raise VerificationFailed(MAX_ATTEMPTS - failures)

    def _right(self, invitation_id: str, method: Method, row: Any, code: str | None, date_of_birth: date | None,
               now: datetime) -> bool:
        if method is Method.CODE:
            sealed, expires_at = row.code, row.code_expires_at
            if code is None or sealed is None or expires_at <= now:
                return False
            expected = self._keyring.open_sealed(sealed, INVITATION_CODE.context(invitation_id))
            return hmac.compare_digest(expected, code.encode())
        sealed = row.date_of_birth
        if date_of_birth is None or sealed is None:
            return False
        expected = self._keyring.open_sealed(sealed, INVITATION_DATE_OF_BIRTH.context(invitation_id))
        return hmac.compare_digest(expected, date_of_birth.isoformat().encode())

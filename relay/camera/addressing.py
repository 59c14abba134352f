"""Who a sender may address a sealed blob to: the tenant's EMR adapter devices (enabled
integration principals), the sender's own devices, and, when the blob names a conversation or
consult (Upload-Metadata ``conversation``), the active devices of its current members. Every
upload and every appended recipient goes through this one function.

A patient's portal session (sender type ``invitation``) may address only its invitation's
recipients, and each of its envelopes must name exactly all of them (``required_recipients``).
"""

from __future__ import annotations

import json
from collections.abc import Collection

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.auth.principal import Principal, PrincipalType
from relay.messaging.membership import load_conversation, member_devices
from relay.storage.tables import devices, integrations, invitations, users


async def addressable_devices(connection: AsyncConnection, sender: Principal, device_ids: Collection[str],
                              conversation_id: str | None = None) -> set[str]:
    """The subset of ``device_ids`` that ``sender`` may address; unknown, revoked, other-tenant
    and disabled owners' devices, and other clinicians' outside the named conversation, are absent."""
    if not device_ids:
        return set()
    rows = await connection.execute(
        select(devices.c.id, devices.c.owner_type, devices.c.owner_id)
        .outerjoin(users, and_(devices.c.owner_type == PrincipalType.USER.value, users.c.id == devices.c.owner_id,
                               users.c.tenant_id == devices.c.tenant_id))
        .outerjoin(integrations, and_(devices.c.owner_type == PrincipalType.INTEGRATION.value,
                                      integrations.c.id == devices.c.owner_id,
                                      integrations.c.tenant_id == devices.c.tenant_id))
        .where(
            devices.c.tenant_id == sender.tenant_id,
            devices.c.id.in_(list(device_ids)),
            devices.c.revoked_at.is_(None),
            or_(users.c.disabled.is_(False), integrations.c.disabled.is_(False)),
        )
    )
    found = rows.all()
    if sender.type is PrincipalType.INVITATION:
        required = await required_recipients(connection, sender) or frozenset()
        return {row.id for row in found if row.id in required}
    members = {} if conversation_id is None else await member_devices(
        connection, await load_conversation(connection, sender.tenant_id, conversation_id))
    return {row.id for row in found
            if row.owner_type == PrincipalType.INTEGRATION.value or row.id in members
            or (row.owner_type == sender.type.value and row.owner_id == sender.id)}


async def required_recipients(connection: AsyncConnection, sender: Principal) -> frozenset[str] | None:
    """The devices a portal session's envelopes must name, exactly; None for every other sender."""
    if sender.type is not PrincipalType.INVITATION:
        return None
    chosen = await connection.scalar(select(invitations.c.recipient_device_ids).where(
        invitations.c.tenant_id == sender.tenant_id, invitations.c.id == sender.id))
    return frozenset(json.loads(chosen)) if chosen else frozenset()

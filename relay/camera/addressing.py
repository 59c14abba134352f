"""Who a sender may address a sealed blob to: the tenant's EMR adapter devices (enabled
integration principals), the sender's own devices, and, when the blob names a conversation or
consult (Upload-Metadata ``conversation``), the active devices of its current members. Every
upload and every appended recipient goes through this one function.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.auth.principal import Principal, PrincipalType
from relay.messaging.membership import load_conversation, member_devices
from relay.storage.tables import devices, integrations, users


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
    members = {} if conversation_id is None else await member_devices(
        connection, await load_conversation(connection, sender.tenant_id, conversation_id))
    return {row.id for row in found
            if row.owner_type == PrincipalType.INTEGRATION.value or row.id in members
            or (row.owner_type == sender.type.value and row.owner_id == sender.id)}

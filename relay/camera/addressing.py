"""Who a sender may address a sealed blob to.

A blob that names a conversation or consult (Upload-Metadata ``conversation``) may go to the
active devices of that conversation's current members and to the tenant's EMR adapter
devices. A blob that names none may, for now, go to any active device in the sender's tenant
of an enabled user or integration principal; every upload and every appended recipient goes
through this one function.
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
    and disabled owners' devices, and non-members' when a conversation is named, are absent."""
    if not device_ids:
        return set()
    rows = await connection.execute(
        select(devices.c.id, devices.c.owner_type)
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
    found = {row.id: row.owner_type for row in rows}
    if conversation_id is None:
        return set(found)
    members = await member_devices(connection, await load_conversation(connection, sender.tenant_id, conversation_id))
    return {device_id for device_id, owner_type in found.items()
            if owner_type == PrincipalType.INTEGRATION.value or device_id in members}

"""Who a sender may address a sealed blob to.

For now: any active device, in the sender's tenant, of an enabled user (the sender's own
devices included) or of an enabled integration principal (an EMR adapter). Conversations and
consults arrive with the messaging issue, which narrows this one function to the members of
the conversation or consult a blob names, plus the tenant's authorised adapters; every upload
and every appended recipient goes through it.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.auth.principal import Principal, PrincipalType
from relay.storage.tables import devices, integrations, users


async def addressable_devices(connection: AsyncConnection, sender: Principal, device_ids: Collection[str]) -> set[str]:
    """The subset of ``device_ids`` that ``sender`` may address; unknown, revoked, other-tenant
    and disabled owners' devices are simply absent."""
    if not device_ids:
        return set()
    rows = await connection.execute(
        select(devices.c.id)
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
    return {row.id for row in rows}

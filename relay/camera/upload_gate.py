"""A hook other parts give the upload service to admit uploads and hear of completions without
the camera relay knowing them (the patient portal counts its invitation's uploads with it)."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from relay.auth.principal import Principal


class UploadGate(Protocol):
    async def admit(self, connection: AsyncConnection, principal: Principal) -> None:
        """In the creating transaction: raise an ApiError to refuse a new upload."""

    async def completed(self, connection: AsyncConnection, principal: Principal, blob_id: str) -> None:
        """In the completing transaction: the upload became a blob."""

    async def after_completed(self, principal: Principal) -> None:
        """After that transaction committed (notifications)."""


class OpenGate:
    """Admits everything; the camera relay's default."""

    async def admit(self, connection: AsyncConnection, principal: Principal) -> None:
        return None

    async def completed(self, connection: AsyncConnection, principal: Principal, blob_id: str) -> None:
        return None

    async def after_completed(self, principal: Principal) -> None:
        return None

"""Tenants and users. Every read and write is scoped to one tenant."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.passwords import check_policy, hash_password, verify_password
from relay.auth.principal import Principal, PrincipalType, Role
from relay.auth.sessions import SessionService
from relay.clock import Clock
from relay.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from relay.ids import new_id
from relay.storage.database import Database
from relay.storage.tables import sessions, tenants, users

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
Actor = tuple[str, str | None]


@dataclass(frozen=True)
class Tenant:
    id: str
    slug: str
    name: str


@dataclass(frozen=True)
class User:
    id: str
    tenant_id: str
    username: str
    display_name: str
    role: Role
    totp_enabled: bool
    disabled: bool
    locked_until: datetime | None
    created_at: datetime


def user_from_row(row: object) -> User:
    return User(
        row.id, row.tenant_id, row.username, row.display_name, Role(row.role),  # type: ignore[attr-defined]
        row.totp_enabled, row.disabled, row.locked_until, row.created_at,  # type: ignore[attr-defined]
    )


class AccountService:
    def __init__(self, database: Database, audit: AuditLog, sessions: SessionService, clock: Clock) -> None:
        self._database = database
        self._audit = audit
        self._sessions = sessions
        self._clock = clock

    async def create_tenant(self, slug: str, name: str, *, actor: Actor = ("system", None)) -> Tenant:
        if not SLUG.fullmatch(slug):
            raise InvalidRequest("tenant slugs are lowercase letters, digits and dashes", code="invalid_slug")
        tenant = Tenant(new_id(), slug, name.strip() or slug)
        try:
            async with self._database.transaction() as connection:
                await connection.execute(
                    insert(tenants).values(id=tenant.id, slug=slug, name=tenant.name, created_at=self._clock.now())
                )
                await self._audit.record(connection, AuditAction.TENANT_CREATED, tenant_id=tenant.id, actor=actor,
                                         object_type="tenant", object_id=tenant.id)
        except IntegrityError:
            raise Conflict(f"a tenant named {slug!r} exists", code="tenant_exists") from None
        return tenant

    async def tenant_by_slug(self, slug: str) -> Tenant | None:
        async with self._database.read() as connection:
            row = (await connection.execute(select(tenants).where(tenants.c.slug == slug))).first()
        return Tenant(row.id, row.slug, row.name) if row else None

    async def get_tenant(self, tenant_id: str) -> Tenant:
        async with self._database.read() as connection:
            row = (await connection.execute(select(tenants).where(tenants.c.id == tenant_id))).one()
        return Tenant(row.id, row.slug, row.name)

    async def create_user(
        self, tenant_id: str, *, username: str, display_name: str, role: Role, password: str, actor: Actor
    ) -> User:
        if role is Role.INTEGRATION:
            raise InvalidRequest("integration principals are created as integrations, not users", code="invalid_role")
        if not USERNAME.fullmatch(username):
            raise InvalidRequest("usernames are lowercase letters, digits, '.', '_' and '-'", code="invalid_username")
        check_policy(password, username=username)
        password_hash = await hash_password(password)
        user_id, now = new_id(), self._clock.now()
        try:
            async with self._database.transaction() as connection:
                await connection.execute(
                    insert(users).values(
                        id=user_id, tenant_id=tenant_id, username=username, display_name=display_name.strip(),
                        role=role.value, password_hash=password_hash, totp_enabled=False,
                        failed_logins=0, disabled=False, created_at=now,
                    )
                )
                await self._audit.record(connection, AuditAction.USER_CREATED, tenant_id=tenant_id, actor=actor,
                                         object_type="user", object_id=user_id, details={"role": role.value})
        except IntegrityError:
            raise Conflict("that username is taken in this tenant", code="username_taken") from None
        return await self.get_user(tenant_id, user_id)

    async def get_user(self, tenant_id: str, user_id: str) -> User:
        async with self._database.read() as connection:
            row = (
                await connection.execute(select(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id))
            ).first()
        if row is None:
            raise NotFound("no such user", code="user_not_found")
        return user_from_row(row)

    async def list_users(self, tenant_id: str) -> list[User]:
        async with self._database.read() as connection:
            rows = await connection.execute(
                select(users).where(users.c.tenant_id == tenant_id).order_by(users.c.username)
            )
            return [user_from_row(row) for row in rows]

    async def update_user(
        self, tenant_id: str, user_id: str, *, actor: Actor, role: Role | None = None,
        disabled: bool | None = None, display_name: str | None = None,
    ) -> User:
        changes: dict[str, object] = {}
        if role is not None:
            if role is Role.INTEGRATION:
                raise InvalidRequest("users cannot take the integration role", code="invalid_role")
            changes["role"] = role.value
        if disabled is not None:
            changes["disabled"] = disabled
        if display_name is not None:
            changes["display_name"] = display_name.strip()
        async with self._database.transaction() as connection:
            await self._require_user(connection, tenant_id, user_id)
            if changes:
                await connection.execute(update(users).where(users.c.id == user_id).values(**changes))
            if disabled:
                await self._sessions.end_all(connection, principal_type=PrincipalType.USER, principal_id=user_id,
                                             code="account_disabled")
            await self._audit.record(
                connection, AuditAction.USER_UPDATED, tenant_id=tenant_id, actor=actor, object_type="user",
                object_id=user_id, details={"fields": ",".join(sorted(changes))},
            )
        return await self.get_user(tenant_id, user_id)

    async def unlock(self, tenant_id: str, user_id: str, *, actor: Actor) -> None:
        async with self._database.transaction() as connection:
            await self._require_user(connection, tenant_id, user_id)
            await connection.execute(
                update(users).where(users.c.id == user_id).values(failed_logins=0, locked_until=None)
            )
            await self._audit.record(connection, AuditAction.USER_UNLOCKED, tenant_id=tenant_id, actor=actor,
                                     object_type="user", object_id=user_id)

    async def end_sessions(self, tenant_id: str, user_id: str, *, actor: Actor) -> int:
        """End every session of a user (an admin's "sign out everywhere")."""
        async with self._database.transaction() as connection:
            await self._require_user(connection, tenant_id, user_id)
            count = await self._sessions.end_all(connection, principal_type=PrincipalType.USER, principal_id=user_id)
            await self._audit.record(connection, AuditAction.SESSIONS_ENDED, tenant_id=tenant_id, actor=actor,
                                     object_type="user", object_id=user_id, details={"sessions": count})
        return count

    async def logout(self, principal: Principal) -> None:
        async with self._database.transaction() as connection:
            await self._sessions.end(connection, principal.session_id)
            await self._audit.record(connection, AuditAction.LOGOUT, tenant_id=principal.tenant_id,
                                     actor=principal.actor, object_type="session", object_id=principal.session_id)

    async def change_password(self, principal: Principal, *, current: str, new: str) -> None:
        """Replace the caller's password and end their other sessions."""
        async with self._database.read() as connection:
            row = (await connection.execute(
                select(users.c.username, users.c.password_hash).where(users.c.id == principal.id)
            )).one()
        if not await verify_password(row.password_hash, current):
            raise Unauthenticated("the current password is wrong", code="invalid_credentials")
        check_policy(new, username=row.username)
        password_hash = await hash_password(new)
        async with self._database.transaction() as connection:
            await connection.execute(update(users).where(users.c.id == principal.id)
                                     .values(password_hash=password_hash))
            await connection.execute(
                update(sessions).where(sessions.c.principal_id == principal.id, sessions.c.id != principal.session_id,
                                       sessions.c.ended_at.is_(None)).values(ended_at=self._clock.now())
            )
            await self._audit.record(connection, AuditAction.PASSWORD_CHANGED, tenant_id=principal.tenant_id,
                                     actor=principal.actor, object_type="user", object_id=principal.id)

    @staticmethod
    async def _require_user(connection: AsyncConnection, tenant_id: str, user_id: str) -> None:
        found = await connection.scalar(
            select(users.c.id).where(users.c.tenant_id == tenant_id, users.c.id == user_id)
        )
        if found is None:
            raise NotFound("no such user", code="user_not_found")

"""REST endpoints for a tenant admin: users, their sessions, lockouts and lost authenticators."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from relay.accounts.service import User
from relay.auth.principal import USER_ROLES, Role
from relay.http.endpoint import Call, RouteTable
from relay.http.schema import RequestBody, ResponseBody
from relay.runtime_key import RUNTIME

routes = RouteTable("users")
ADMIN = frozenset({Role.ADMIN})


class UserView(ResponseBody):
    id: str
    username: str
    display_name: str
    role: Role
    totp_enabled: bool
    disabled: bool
    locked_until: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserView:
        return cls(id=user.id, username=user.username, display_name=user.display_name, role=user.role,
                   totp_enabled=user.totp_enabled, disabled=user.disabled, locked_until=user.locked_until,
                   created_at=user.created_at)


class UserList(ResponseBody):
    users: list[UserView]


class NewUser(RequestBody):
    username: str = Field(min_length=1, max_length=64)
    display_name: str = Field(min_length=1, max_length=200)
    role: Role
    password: str = Field(min_length=1, max_length=1024)


class UserChanges(RequestBody):
    role: Role | None = None
    disabled: bool | None = None
    display_name: str | None = Field(None, min_length=1, max_length=200)


class EndedSessions(ResponseBody):
    ended: int


class TenantView(ResponseBody):
    id: str
    slug: str
    name: str


@routes.get("/api/v1/tenant", summary="The caller's tenant", roles=USER_ROLES, response=TenantView)
async def get_tenant(call: Call) -> TenantView:
    tenant = await call.request.app[RUNTIME].accounts.get_tenant(call.caller.tenant_id)
    return TenantView(id=tenant.id, slug=tenant.slug, name=tenant.name)


@routes.get("/api/v1/users", summary="List the tenant's users", roles=ADMIN, response=UserList)
async def list_users(call: Call) -> UserList:
    users = await call.request.app[RUNTIME].accounts.list_users(call.caller.tenant_id)
    return UserList(users=[UserView.of(user) for user in users])


@routes.post("/api/v1/users", summary="Create a user", roles=ADMIN, body=NewUser, response=UserView, status=201)
async def create_user(call: Call[NewUser]) -> UserView:
    body = call.body
    user = await call.request.app[RUNTIME].accounts.create_user(
        call.caller.tenant_id, username=body.username, display_name=body.display_name, role=body.role,
        password=body.password, actor=call.caller.actor,
    )
    return UserView.of(user)


@routes.get("/api/v1/users/{user_id}", summary="One user", roles=ADMIN, response=UserView)
async def get_user(call: Call) -> UserView:
    return UserView.of(await call.request.app[RUNTIME].accounts.get_user(call.caller.tenant_id, call.param("user_id")))


@routes.patch("/api/v1/users/{user_id}", summary="Change a user's role, name or disabled state", roles=ADMIN,
              body=UserChanges, response=UserView)
async def update_user(call: Call[UserChanges]) -> UserView:
    body = call.body
    user = await call.request.app[RUNTIME].accounts.update_user(
        call.caller.tenant_id, call.param("user_id"), actor=call.caller.actor, role=body.role,
        disabled=body.disabled, display_name=body.display_name,
    )
    return UserView.of(user)


@routes.delete("/api/v1/users/{user_id}/sessions", summary="End every session of a user", roles=ADMIN,
               response=EndedSessions)
async def end_user_sessions(call: Call) -> EndedSessions:
    count = await call.request.app[RUNTIME].accounts.end_sessions(
        call.caller.tenant_id, call.param("user_id"), actor=call.caller.actor
    )
    return EndedSessions(ended=count)


@routes.post("/api/v1/users/{user_id}/unlock", summary="Lift a login lockout", roles=ADMIN, status=204)
async def unlock_user(call: Call) -> None:
    await call.request.app[RUNTIME].accounts.unlock(call.caller.tenant_id, call.param("user_id"), actor=call.caller.actor)


@routes.delete("/api/v1/users/{user_id}/totp", summary="Remove a user's second factor (lost authenticator)",
               roles=ADMIN, status=204)
async def reset_user_totp(call: Call) -> None:
    runtime = call.request.app[RUNTIME]
    await runtime.accounts.get_user(call.caller.tenant_id, call.param("user_id"))
    await runtime.second_factor.disable(call.caller.tenant_id, call.param("user_id"), actor=call.caller.actor)

"""`relay admin ...`: first-run bootstrap and account rescue from the server's shell."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from relay.accounts.service import Tenant
from relay.auth.principal import Role
from relay.cli.options import settings_from, with_runtime
from relay.errors import NotFound, SettingsError
from relay.runtime import Runtime

OPERATOR = ("operator", None)


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser("admin", help="tenants and users")
    actions = parser.add_subparsers(dest="admin_command", required=True, metavar="ACTION")

    tenant = actions.add_parser("create-tenant", help="create a tenant (a hospital or department)")
    tenant.add_argument("slug", help="short name used at login, e.g. st-mary")
    tenant.add_argument("--name", default="", help="display name")
    tenant.set_defaults(run=create_tenant)

    user = actions.add_parser("create-user", help="create a user in a tenant")
    user.add_argument("--tenant", required=True, help="tenant slug")
    user.add_argument("--username", required=True)
    user.add_argument("--display-name", default="")
    user.add_argument("--role", required=True, choices=[r.value for r in Role if r is not Role.INTEGRATION])
    user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user.set_defaults(run=create_user)

    unlock = actions.add_parser("unlock-user", help="lift a login lockout")
    unlock.add_argument("--tenant", required=True)
    unlock.add_argument("--username", required=True)
    unlock.set_defaults(run=unlock_user)

    end = actions.add_parser("end-sessions", help="end every session of a user")
    end.add_argument("--tenant", required=True)
    end.add_argument("--username", required=True)
    end.set_defaults(run=end_sessions)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password (12+ characters): ")
    if getpass.getpass("Again: ") != first:
        raise SettingsError("the passwords differ")
    return first


async def _tenant(runtime: Runtime, slug: str) -> Tenant:
    tenant = await runtime.accounts.tenant_by_slug(slug)
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}; create it with `relay admin create-tenant {slug}`")
    return tenant


async def _user_id(runtime: Runtime, slug: str, username: str) -> tuple[str, str]:
    tenant = await _tenant(runtime, slug)
    for user in await runtime.accounts.list_users(tenant.id):
        if user.username == username:
            return tenant.id, user.id
    raise NotFound(f"no user {username!r} in tenant {slug!r}")


def create_tenant(args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> Tenant:
        return await runtime.accounts.create_tenant(args.slug, args.name, actor=OPERATOR)

    tenant = with_runtime(settings_from(args), work)
    print(f"tenant {tenant.slug} created (id {tenant.id})")
    return 0


def create_user(args: argparse.Namespace) -> int:
    password = _read_password(args)

    async def work(runtime: Runtime) -> str:
        tenant = await _tenant(runtime, args.tenant)
        user = await runtime.accounts.create_user(
            tenant.id, username=args.username, display_name=args.display_name or args.username,
            role=Role(args.role), password=password, actor=OPERATOR,
        )
        return user.id

    user_id = with_runtime(settings_from(args), work)
    print(f"user {args.username} ({args.role}) created in {args.tenant} (id {user_id})")
    return 0


def unlock_user(args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> None:
        tenant_id, user_id = await _user_id(runtime, args.tenant, args.username)
        await runtime.accounts.unlock(tenant_id, user_id, actor=OPERATOR)

    with_runtime(settings_from(args), work)
    print(f"{args.username} unlocked")
    return 0


def end_sessions(args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        tenant_id, user_id = await _user_id(runtime, args.tenant, args.username)
        return await runtime.accounts.end_sessions(tenant_id, user_id, actor=OPERATOR)

    count = with_runtime(settings_from(args), work)
    print(f"{count} session(s) of {args.username} ended")
    return 0

"""Every declared route × every role × another tenant's objects.

- Without a token every protected route answers 401.
- A role the route does not admit gets 403 ``role_forbidden``; an admitted role never does.
- Ids of another tenant's objects answer 404, exactly like unknown ids, and no answer to
  tenant A ever carries one of tenant B's ids.

A new route fails this test until it is given an example body below (when it takes one).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from relay.app import all_endpoints
from relay.auth.principal import Role
from relay.http.endpoint import Endpoint
from tests.support.devices import DeviceKeys, register_device
from tests.support.envelopes import adapter, create_upload, seal_photo, upload
from tests.support.harness import PASSWORD, Relay
from tests.support.integration import AdapterKey
from tests.support.portal import Link, PatientPage, link_parts

PROTECTED = [endpoint for endpoint in all_endpoints() if not endpoint.public]
PUBLIC = {(e.method, e.path) for e in all_endpoints() if e.public}
EXPECTED_PUBLIC = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/api/openapi.json"),
    ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/token"), ("OPTIONS", "/api/v1/uploads"),
    ("POST", "/api/v1/portal/sessions"),
    ("GET", "/p/{invitation_id:[A-Za-z0-9_-]+}"), ("GET", "/portal/assets/{path:[A-Za-z0-9_@./-]+}"),
}
TUS_HEADERS = {"Tus-Resumable": "1.0.0", "Upload-Offset": "0"}


@dataclass
class Tenant:
    tokens: dict[Role, str]
    ids: dict[str, str]


@dataclass
class World:
    own: Tenant
    other: Tenant

    def path(self, endpoint: Endpoint, tenant: Tenant) -> str:
        return endpoint.path.format(**tenant.ids)


async def build_tenant(relay: Relay, slug: str) -> Tenant:
    admin = await relay.account(f"admin-{slug}", Role.ADMIN, tenant=slug)
    clinician = await relay.account(f"clinician-{slug}", Role.CLINICIAN, tenant=slug)
    auditor = await relay.account(f"auditor-{slug}", Role.AUDITOR, tenant=slug)
    emr = await adapter(relay, admin, name=f"adapter-{slug}")
    device = await register_device(relay, clinician.token, one_time_keys=3)
    on_device = await relay.login(clinician, device_id=device.id)
    blob_id = await upload(relay, on_device, await seal_photo(device, [device], b"photo"))
    created = await create_upload(relay, on_device, await seal_photo(device, [device], b"another"))
    group = await relay.call("POST", "/api/v1/conversations", token=on_device,
                             json={"kind": "group", "member_user_ids": [clinician.user_id]})
    assert group.status == 201, await group.text()
    colleague = await relay.account(f"colleague-{slug}", Role.CLINICIAN, tenant=slug)
    pool = await relay.call("POST", "/api/v1/pools", token=admin.token,
                            json={"name": "on call", "member_user_ids": [colleague.user_id]})
    assert pool.status == 201, await pool.text()
    consult = await relay.call("POST", "/api/v1/consults", token=on_device, json={"pool_id": (await pool.json())["id"]})
    assert consult.status == 201, await consult.text()
    parts = link_parts([device])
    invitation = await relay.call("POST", "/api/v1/invitations", token=on_device, json={
        "channel": "email", "contact": "pat@example.org",
        "verification": {"method": "date_of_birth", "date_of_birth": "1970-01-01"},
        "recipient_device_ids": [device.id], **parts.body()})
    assert invitation.status == 201, await invitation.text()
    invitation_id = (await invitation.json())["id"]
    portal = await relay.call("POST", "/api/v1/portal/sessions", json={"invitation_id": invitation_id,
                                                                       "secret": parts.secret})
    assert portal.status == 201, await portal.text()
    patient = PatientPage(relay, Link(invitation_id, parts.secret, parts.commitment))
    patient.token = (await portal.json())["token"]
    await patient.ready(date_of_birth="1970-01-01", opened=True)
    return Tenant(
        tokens={Role.ADMIN: admin.token, Role.CLINICIAN: on_device, Role.AUDITOR: auditor.token,
                Role.INTEGRATION: emr.token, Role.PATIENT: patient.token},
        ids={"user_id": clinician.user_id, "device_id": device.id, "integration_id": emr.integration_id,
             "blob_id": blob_id, "upload_id": created.headers["Location"].rsplit("/", 1)[1],
             "conversation_id": (await group.json())["id"], "pool_id": (await pool.json())["id"],
             "consult_id": (await consult.json())["id"], "invitation_id": invitation_id},
    )


EXAMPLES: dict[str, Callable[[], dict[str, Any]]] = {
    "reauth": lambda: {"password": PASSWORD},
    "create_invitation": lambda: {"channel": "email", "contact": "pat@example.org", "verification": {"method": "code"},
                                  "recipient_device_ids": [secrets.token_hex(16)],
                                  **link_parts([]).body()},
    "resend_invitation": lambda: link_parts([]).body(),
    "verify_portal_session": lambda: {"code": "000000"},
    "record_portal_consent": lambda: {"consent_id": f"consent-{secrets.token_hex(4)}", "consent_sha256": "0" * 64},
    "register_portal_device": lambda: {"identity_key": DeviceKeys().identity_key,
                                       "encryption_key": DeviceKeys().encryption_upload()},
    "open_portal_session": lambda: {"invitation_id": secrets.token_hex(16), "secret": link_parts([]).secret},
    "device_session": lambda: {"device_id": secrets.token_hex(16)},
    "change_password": lambda: {"current_password": PASSWORD, "new_password": "another long passphrase"},
    "confirm_totp": lambda: {"code": "000000"},
    "create_user": lambda: {"username": f"u{secrets.token_hex(4)}", "display_name": "New", "role": "clinician",
                            "password": PASSWORD},
    "update_user": lambda: {"display_name": "Renamed"},
    "create_integration": lambda: {"name": f"adapter-{secrets.token_hex(4)}",
                                   "public_key_pem": AdapterKey.generate().public_pem},
    "update_integration": lambda: {"disabled": False},
    "register_device": lambda: DeviceKeys().registration(),
    "rotate_encryption_key": lambda: DeviceKeys().encryption_upload(),
    "upload_one_time_keys": lambda: {"one_time_keys": DeviceKeys().one_time_batch(2)},
    "reject_blob": lambda: {"reason": "patient_not_found"},
    "set_photo_retention": lambda: {"seconds": 86400},
    "create_conversation": lambda: {"kind": "group", "member_user_ids": [secrets.token_hex(16)]},
    "add_members": lambda: {"user_ids": [secrets.token_hex(16)]},
    "create_pool": lambda: {"name": f"pool-{secrets.token_hex(4)}", "member_user_ids": [secrets.token_hex(16)]},
    "set_pool_members": lambda: {"member_user_ids": [secrets.token_hex(16)]},
    "create_consult": lambda: {"colleague_user_id": secrets.token_hex(16)},
    "set_consult_escalation": lambda: {"seconds": 600},
}


def example_body(endpoint: Endpoint) -> dict[str, Any] | None:
    if endpoint.body is None:
        return None
    name = endpoint.handler.__name__
    assert name in EXAMPLES, f"give {endpoint.method} {endpoint.path} ({name}) an example body in this test"
    return EXAMPLES[name]()


async def call(relay: Relay, endpoint: Endpoint, path: str, token: str | None) -> tuple[int, str, str]:
    """Call with the endpoint's example body; raw-body endpoints (tus, envelope heads) get an
    empty body of their content type, and the tus endpoints the protocol's headers."""
    headers = TUS_HEADERS if endpoint.tag == "uploads" else {}
    if endpoint.raw_body is not None:
        response = await relay.call(endpoint.method, path, token=token, data=b"",
                                    headers=headers | {"Content-Type": endpoint.raw_body})
    else:
        response = await relay.call(endpoint.method, path, token=token, json=example_body(endpoint), headers=headers)
    text = await response.text(errors="replace")
    code = ""
    if response.content_type == "application/json" and response.status >= 400:
        code = (await response.json())["error"]["code"] if text else role_forbidden_of(endpoint, response.status)
    return response.status, code, text


def role_forbidden_of(endpoint: Endpoint, status: int) -> str:
    """A HEAD answer has no body to carry its code: a 403 counts as role_forbidden. The world's
    clinician and integration tokens are bound to devices, so an admitted role reaches the
    handler and never gets a 403 for lacking one."""
    assert endpoint.method == "HEAD", f"{endpoint.method} {endpoint.path} answered {status} without a body"
    return "role_forbidden" if status == 403 else ""


def test_only_the_intended_routes_are_public() -> None:
    assert PUBLIC == EXPECTED_PUBLIC


@pytest.mark.parametrize("endpoint", PROTECTED, ids=lambda e: f"{e.method} {e.path}")
async def test_route_roles_and_tenants(relay: Relay, endpoint: Endpoint) -> None:
    world = World(await build_tenant(relay, "general"), await build_tenant(relay, "elsewhere"))
    assert endpoint.roles is not None
    foreign_ids = set(world.other.ids.values())

    status, code, _ = await call(relay, endpoint, world.path(endpoint, world.own), None)
    assert status == 401, "no token"

    refused = [role for role in Role if role not in endpoint.roles]
    admitted = [role for role in Role if role in endpoint.roles]
    for role in refused:
        status, code, _ = await call(relay, endpoint, world.path(endpoint, world.own), world.own.tokens[role])
        assert (status, code) == (403, "role_forbidden"), role

    if "{" in endpoint.path:
        for role in admitted:
            status, code, text = await call(relay, endpoint, world.path(endpoint, world.other),
                                            world.own.tokens[role])
            assert status == 404, f"{role} reached another tenant's object: {status} {code}"
            assert not any(foreign in text for foreign in foreign_ids)

    for role in admitted:
        status, code, text = await call(relay, endpoint, world.path(endpoint, world.own), world.own.tokens[role])
        assert status != 401 and code != "role_forbidden", f"{role} was refused: {status} {code}"
        assert status < 500
        assert not any(foreign in text for foreign in foreign_ids), f"{role} saw another tenant's ids"

"""REST endpoints for logging in and out, re-authenticating, and the caller's own second factor."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from relay.auth.integrations import ASSERTION_TYPE
from relay.auth.login import Credentials
from relay.auth.principal import ALL_ROLES, USER_ROLES
from relay.errors import InvalidRequest
from relay.http.endpoint import Call, RouteTable
from relay.http.schema import RequestBody, ResponseBody
from relay.runtime_key import RUNTIME

routes = RouteTable("auth")

Secret = Field(min_length=1, max_length=1024)
Code = Field(min_length=6, max_length=64)


class LoginRequest(RequestBody):
    tenant: str = Field(min_length=1, max_length=63)
    username: str = Field(min_length=1, max_length=64)
    password: str = Secret
    totp_code: str | None = Field(None, min_length=6, max_length=6)
    recovery_code: str | None = Field(None, min_length=6, max_length=64)
    device_id: str | None = Field(None, min_length=32, max_length=32)


class SessionView(ResponseBody):
    token: str
    session_id: str
    expires_at: datetime
    idle_timeout_seconds: int


class ReauthRequest(RequestBody):
    password: str = Secret
    totp_code: str | None = Field(None, min_length=6, max_length=6)


class MeView(ResponseBody):
    id: str
    tenant_id: str
    username: str
    display_name: str
    role: str
    totp_enabled: bool
    session_id: str
    device_id: str | None


class TotpEnrolment(ResponseBody):
    secret: str
    otpauth_uri: str


class TotpConfirmation(RequestBody):
    code: str = Field(min_length=6, max_length=6)


class RecoveryCodes(ResponseBody):
    recovery_codes: list[str]


class PasswordChange(RequestBody):
    current_password: str = Secret
    new_password: str = Secret


class TokenRequest(RequestBody):
    """OAuth 2.0 client credentials with a private_key_jwt client assertion (RFC 7523)."""

    grant_type: str
    client_assertion_type: str
    client_assertion: str = Field(min_length=1, max_length=8192)
    scope: str | None = Field(None, max_length=1024)
    device_id: str | None = Field(None, min_length=32, max_length=32,
                                  description="Bind the token to one of the integration's devices (its adapter).")


class AccessToken(ResponseBody):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


@routes.post("/api/v1/auth/login", summary="Log in with password (and TOTP or a recovery code)", roles=None,
             body=LoginRequest, response=SessionView, status=201)
async def login(call: Call[LoginRequest]) -> SessionView:
    runtime = call.request.app[RUNTIME]
    body = call.body
    issued = await runtime.login.login(
        Credentials(body.tenant, body.username, body.password, body.totp_code, body.recovery_code, body.device_id),
        client_address=call.request.remote or "unknown",
    )
    return SessionView(token=issued.token, session_id=issued.session_id, expires_at=issued.expires_at,
                       idle_timeout_seconds=runtime.settings.session_idle_timeout)


class DeviceSessionRequest(RequestBody):
    device_id: str = Field(min_length=32, max_length=32, description="One of the caller's active devices")


@routes.post("/api/v1/auth/device-session", summary="Trade the caller's session for one bound to one of their "
             "devices (after registering it); the old token ends", roles=USER_ROLES, body=DeviceSessionRequest,
             response=SessionView, status=201)
async def device_session(call: Call[DeviceSessionRequest]) -> SessionView:
    runtime = call.request.app[RUNTIME]
    issued = await runtime.login.move_to_device(call.caller, call.body.device_id)
    return SessionView(token=issued.token, session_id=issued.session_id, expires_at=issued.expires_at,
                       idle_timeout_seconds=runtime.settings.session_idle_timeout)


@routes.post("/api/v1/auth/logout", summary="End the current session", roles=ALL_ROLES, status=204)
async def logout(call: Call) -> None:
    runtime = call.request.app[RUNTIME]
    await runtime.accounts.logout(call.caller)


@routes.post("/api/v1/auth/reauth", summary="Re-authenticate before a sensitive action such as an export",
             roles=USER_ROLES, body=ReauthRequest, status=204)
async def reauth(call: Call[ReauthRequest]) -> None:
    await call.request.app[RUNTIME].login.reauthenticate(
        call.caller, password=call.body.password, totp_code=call.body.totp_code
    )


@routes.post("/api/v1/auth/token", summary="Exchange an integration's signed JWT assertion for an access token",
             roles=None, body=TokenRequest, response=AccessToken, body_type="application/x-www-form-urlencoded")
async def token(call: Call[TokenRequest]) -> AccessToken:
    body = call.body
    if body.grant_type != "client_credentials":
        raise InvalidRequest("grant_type must be client_credentials", code="unsupported_grant_type")
    if body.client_assertion_type != ASSERTION_TYPE:
        raise InvalidRequest(f"client_assertion_type must be {ASSERTION_TYPE}", code="invalid_request")
    runtime = call.request.app[RUNTIME]
    issued = await runtime.integrations.exchange(body.client_assertion, device_id=body.device_id)
    lifetime = runtime.settings.integration_token_lifetime
    return AccessToken(access_token=issued.token, token_type="bearer", expires_in=lifetime,
                       scope=body.scope or "system/*.read")


@routes.get("/api/v1/me", summary="The calling user", roles=USER_ROLES, response=MeView)
async def me(call: Call) -> MeView:
    principal = call.caller
    user = await call.request.app[RUNTIME].accounts.get_user(principal.tenant_id, principal.id)
    return MeView(id=user.id, tenant_id=user.tenant_id, username=user.username, display_name=user.display_name,
                  role=user.role.value, totp_enabled=user.totp_enabled, session_id=principal.session_id,
                  device_id=principal.device_id)


@routes.post("/api/v1/me/password", summary="Change the caller's password; ends their other sessions",
             roles=USER_ROLES, body=PasswordChange, status=204)
async def change_password(call: Call[PasswordChange]) -> None:
    await call.request.app[RUNTIME].accounts.change_password(
        call.caller, current=call.body.current_password, new=call.body.new_password
    )


@routes.post("/api/v1/me/totp", summary="Start enrolling a TOTP authenticator", roles=USER_ROLES,
             response=TotpEnrolment, status=201)
async def begin_totp(call: Call) -> TotpEnrolment:
    enrolment = await call.request.app[RUNTIME].second_factor.begin(call.caller)
    return TotpEnrolment(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@routes.post("/api/v1/me/totp/confirm", summary="Confirm the authenticator with a code; returns recovery codes",
             roles=USER_ROLES, body=TotpConfirmation, response=RecoveryCodes)
async def confirm_totp(call: Call[TotpConfirmation]) -> RecoveryCodes:
    codes = await call.request.app[RUNTIME].second_factor.confirm(call.caller, call.body.code)
    return RecoveryCodes(recovery_codes=codes)


@routes.delete("/api/v1/me/totp", summary="Remove the caller's second factor (needs a recent re-authentication)",
               roles=USER_ROLES, status=204)
async def disable_totp(call: Call) -> None:
    runtime = call.request.app[RUNTIME]
    runtime.login.require_recent_reauth(call.caller)
    await runtime.second_factor.disable(call.caller.tenant_id, call.caller.id, actor=call.caller.actor)


@routes.post("/api/v1/me/recovery-codes", summary="Replace the caller's recovery codes (needs a recent re-authentication)",
             roles=USER_ROLES, response=RecoveryCodes)
async def regenerate_recovery_codes(call: Call) -> RecoveryCodes:
    runtime = call.request.app[RUNTIME]
    runtime.login.require_recent_reauth(call.caller)
    return RecoveryCodes(recovery_codes=await runtime.second_factor.regenerate_recovery_codes(call.caller))

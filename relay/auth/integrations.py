"""Integration principals (EMR adapters): no passwords. Each holds its own private key and
trades a signed JWT client assertion (RFC 7523, as in SMART Backend Services) for a
short-lived access token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from relay.audit.actions import AuditAction
from relay.audit.log import AuditLog
from relay.auth.principal import PrincipalType
from relay.auth.sessions import IssuedSession, SessionService
from relay.clock import Clock
from relay.ephemeral.contract import EphemeralStore
from relay.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from relay.ids import new_id, token_hash
from relay.storage.database import Database
from relay.storage.tables import devices, integrations

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)
CLOCK_SKEW = timedelta(seconds=60)
ALGORITHMS_BY_KEY: dict[type, list[str]] = {
    rsa.RSAPublicKey: ["RS384", "RS256", "RS512", "PS384", "PS256", "PS512"],
    ec.EllipticCurvePublicKey: ["ES384", "ES256", "ES512"],
    ed25519.Ed25519PublicKey: ["EdDSA"],
}
TOKEN_PATH = "/api/v1/auth/token"


@dataclass(frozen=True)
class Integration:
    id: str
    tenant_id: str
    name: str
    disabled: bool
    created_at: datetime


def _algorithms(public_key_pem: str) -> list[str]:
    try:
        key = load_pem_public_key(public_key_pem.encode())
    except (ValueError, TypeError):
        raise InvalidRequest("public_key_pem is not a PEM public key", code="invalid_public_key") from None
    for kind, algorithms in ALGORITHMS_BY_KEY.items():
        if isinstance(key, kind):
            if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
                raise InvalidRequest("RSA keys need at least 2048 bits", code="invalid_public_key")
            return algorithms
    raise InvalidRequest("use an RSA, EC or Ed25519 public key", code="invalid_public_key")


class IntegrationService:
    def __init__(
        self, database: Database, sessions: SessionService, audit: AuditLog, ephemeral: EphemeralStore,
        clock: Clock, *, token_url: str, token_lifetime: int,
    ) -> None:
        self._database = database
        self._sessions = sessions
        self._audit = audit
        self._ephemeral = ephemeral
        self._clock = clock
        self.token_url = token_url
        self._token_lifetime = timedelta(seconds=token_lifetime)

    async def create(self, tenant_id: str, *, name: str, public_key_pem: str, actor: tuple[str, str | None]) -> Integration:
        _algorithms(public_key_pem)
        integration = Integration(new_id(), tenant_id, name, False, self._clock.now())
        try:
            async with self._database.transaction() as connection:
                await connection.execute(insert(integrations).values(
                    id=integration.id, tenant_id=tenant_id, name=name, public_key_pem=public_key_pem,
                    disabled=False, created_at=integration.created_at,
                ))
                await self._audit.record(connection, AuditAction.INTEGRATION_CREATED, tenant_id=tenant_id,
                                         actor=actor, object_type="integration", object_id=integration.id)
        except IntegrityError:
            raise Conflict("an integration with that name exists", code="integration_exists") from None
        return integration

    async def list(self, tenant_id: str) -> list[Integration]:
        async with self._database.read() as connection:
            rows = await connection.execute(
                select(integrations).where(integrations.c.tenant_id == tenant_id).order_by(integrations.c.name)
            )
            return [Integration(r.id, r.tenant_id, r.name, r.disabled, r.created_at) for r in rows]

    async def set_disabled(self, tenant_id: str, integration_id: str, disabled: bool, *, actor: tuple[str, str | None]) -> None:
        async with self._database.transaction() as connection:
            changed = await connection.execute(
                update(integrations).where(integrations.c.tenant_id == tenant_id, integrations.c.id == integration_id)
                .values(disabled=disabled)
            )
            if not changed.rowcount:
                raise NotFound("no such integration", code="integration_not_found")
            if disabled:
                await self._sessions.end_all(connection, principal_type=PrincipalType.INTEGRATION,
                                             principal_id=integration_id, code="account_disabled")

    async def exchange(self, assertion: str, *, device_id: str | None = None) -> IssuedSession:
        """Verify a client assertion and issue an access token; every failure is ``invalid_client``.

        With ``device_id`` (one of the integration's active devices, e.g. its EMR adapter's) the
        token is bound to that device, as a user's login with a device is: it may then pull what
        is addressed to the device and connect to socket.io."""
        claims, row = await self._verify(assertion)
        if device_id is not None and not await self._owns_device(row, device_id):
            await self._reject(row, "unknown_device")
            raise InvalidRequest("that device is not one of this integration's active devices", code="unknown_device")
        async with self._database.transaction() as connection:
            issued = await self._sessions.issue(
                connection, tenant_id=row.tenant_id, principal_type=PrincipalType.INTEGRATION,
                principal_id=row.id, device_id=device_id, lifetime=self._token_lifetime,
            )
            await self._audit.record(connection, AuditAction.INTEGRATION_TOKEN, tenant_id=row.tenant_id,
                                     actor=("integration", row.id), object_type="session",
                                     object_id=issued.session_id,
                                     details={"device_id": device_id} if device_id else None)
        return issued

    async def _owns_device(self, row: Any, device_id: str) -> bool:
        async with self._database.read() as connection:
            found = await connection.scalar(select(devices.c.id).where(
                devices.c.id == device_id, devices.c.tenant_id == row.tenant_id,
                devices.c.owner_type == PrincipalType.INTEGRATION.value, devices.c.owner_id == row.id,
                devices.c.revoked_at.is_(None),
            ))
        return found is not None

    async def _verify(self, assertion: str) -> tuple[dict[str, Any], Any]:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise self._invalid("the client assertion is not a JWT") from None
        client_id = unverified.get("iss")
        if not isinstance(client_id, str):
            raise self._invalid("the assertion names no issuer")
        async with self._database.read() as connection:
            row = (await connection.execute(select(integrations).where(integrations.c.id == client_id))).first()
        if row is None or row.disabled:
            await self._audit.record_alone(AuditAction.INTEGRATION_TOKEN, tenant_id=None,
                                           actor=("anonymous", None), outcome="failure",
                                           details={"reason": "unknown_client"})
            raise self._invalid("unknown or disabled client")
        try:
            claims = jwt.decode(
                assertion,
                load_pem_public_key(row.public_key_pem.encode()),  # type: ignore[arg-type]
                algorithms=_algorithms(row.public_key_pem),
                audience=self.token_url,
                issuer=client_id,
                options={"require": ["iss", "sub", "aud", "exp", "jti"], "verify_exp": False, "verify_iat": False,
                         "verify_nbf": False},
            )
        except jwt.PyJWTError as error:
            await self._reject(row, type(error).__name__)
            raise self._invalid(f"the client assertion does not verify: {error}") from None
        now = self._clock.now()
        exp = datetime.fromtimestamp(float(claims["exp"]), UTC)
        if claims["sub"] != client_id:
            await self._reject(row, "sub_mismatch")
            raise self._invalid("sub must equal iss (the client id)")
        if exp + CLOCK_SKEW < now:
            await self._reject(row, "expired")
            raise self._invalid("the client assertion has expired")
        if exp - now > MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
            await self._reject(row, "lifetime_too_long")
            raise self._invalid("client assertions may live at most five minutes")
        ttl = int((exp - now + CLOCK_SKEW).total_seconds()) + 1
        if not await self._ephemeral.claim(f"jti:{token_hash(client_id + ':' + str(claims['jti']))}", ttl):
            await self._reject(row, "replayed")
            raise self._invalid("this client assertion was already used")
        return claims, row

    async def _reject(self, row: Any, reason: str) -> None:
        await self._audit.record_alone(AuditAction.INTEGRATION_TOKEN, tenant_id=row.tenant_id,
                                       actor=("integration", row.id), outcome="failure", details={"reason": reason})

    @staticmethod
    def _invalid(message: str) -> Unauthenticated:
        return Unauthenticated(message, code="invalid_client")

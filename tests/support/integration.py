"""An EMR adapter's side of RFC 7523: its own key pair and signed client assertions."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class AdapterKey:
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> AdapterKey:
        return cls(ec.generate_private_key(ec.SECP384R1()))

    @property
    def public_pem(self) -> str:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def assertion(self, client_id: str, audience: str, now: datetime, *, lifetime: int = 240,
                  **overrides: Any) -> str:
        claims = {"iss": client_id, "sub": client_id, "aud": audience, "jti": secrets.token_hex(16),
                  "exp": int((now + timedelta(seconds=lifetime)).timestamp())} | overrides
        return jwt.encode(claims, self.private_key, algorithm="ES384", headers={"kid": "adapter-1"})


def token_form(assertion: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion, "scope": "system/*.read"}

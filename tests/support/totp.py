"""Computing authenticator codes as a phone app would."""

from __future__ import annotations

import base64
from datetime import datetime

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP


def code_at(secret_b32: str, when: datetime) -> str:
    secret = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    return TOTP(secret, 6, SHA1(), 30, enforce_key_length=False).generate(int(when.timestamp())).decode()

"""Time-based one-time passwords (RFC 6238) with `cryptography`'s TOTP, and recovery codes."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from relay.ids import token_hash

DIGITS = 6
STEP = 30
DRIFT_STEPS = 1
SECRET_BYTES = 20
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def _totp(secret: bytes) -> TOTP:
    return TOTP(secret, DIGITS, SHA1(), STEP, enforce_key_length=False)


def provisioning_uri(secret: bytes, *, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app scans (holds the secret: show it once, never log it)."""
    return _totp(secret).get_provisioning_uri(account, issuer)


def secret_text(secret: bytes) -> str:
    return base64.b32encode(secret).decode().rstrip("=")


def matching_step(secret: bytes, code: str, now: datetime, *, after_step: int | None) -> int | None:
    """The time step whose code ``code`` is (within one step of drift), or None.

    Steps at or before ``after_step`` are refused, so an observed code cannot be replayed.
    """
    if len(code) != DIGITS or not code.isdigit():
        return None
    current = int(now.timestamp()) // STEP
    totp = _totp(secret)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if after_step is not None and step <= after_step:
            continue
        try:
            totp.verify(code.encode(), step * STEP)
        except InvalidToken:
            continue
        return step
    return None


def new_recovery_codes() -> list[str]:
    return [
        "-".join("".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(5)) for _ in range(3))
        for _ in range(RECOVERY_CODES)
    ]


def recovery_code_hash(code: str) -> str:
    """Recovery codes carry ~74 bits of randomness each; stored only as digests."""
    return token_hash(code.strip().lower().replace(" ", ""))

"""Opaque identifiers and secrets. Ids carry no meaning and never derive from user input."""

from __future__ import annotations

import hashlib
import secrets


def new_id() -> str:
    """A random, URL-safe, 128-bit identifier."""
    return secrets.token_hex(16)


def new_token() -> str:
    """A random bearer secret (256 bits), shown to its holder once and stored only as a hash."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The digest under which a high-entropy token is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()

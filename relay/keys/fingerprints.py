"""Fingerprints: a device's identity key rendered for people to compare out of band.

SHA-512 over b"relay/v1/fingerprint" || 0x00 || identity_key (32 bytes); the first 60 bytes
are cut into twelve 5-byte big-endian integers, each shown as its value modulo 100000 in
five digits, groups separated by spaces (docs/keys.md has a test vector).
"""

from __future__ import annotations

import hashlib

DOMAIN = b"relay/v1/fingerprint\x00"
GROUPS = 12
GROUP_BYTES = 5


def fingerprint(identity_key: bytes) -> str:
    digest = hashlib.sha512(DOMAIN + identity_key).digest()
    chunks = (digest[i * GROUP_BYTES : (i + 1) * GROUP_BYTES] for i in range(GROUPS))
    return " ".join(f"{int.from_bytes(chunk, 'big') % 100000:05d}" for chunk in chunks)

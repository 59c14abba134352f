"""Password hashing with argon2id (libsodium through pynacl)."""

from __future__ import annotations

import nacl.exceptions
import nacl.pwhash

from relay.errors import InvalidRequest

MIN_LENGTH = 12
MAX_LENGTH = 256

_argon2id = nacl.pwhash.argon2id
_DUMMY = _argon2id.str(b"relay-dummy-password", opslimit=_argon2id.OPSLIMIT_INTERACTIVE, memlimit=_argon2id.MEMLIMIT_INTERACTIVE)


def check_policy(password: str, *, username: str) -> None:
    """Refuse passwords too short, too long, or containing the username."""
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"passwords need at least {MIN_LENGTH} characters", code="weak_password")
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(f"passwords may have at most {MAX_LENGTH} characters", code="weak_password")
    if username and username.lower() in password.lower():
        raise InvalidRequest("the password may not contain the username", code="weak_password")


def hash_password(password: str) -> str:
    return _argon2id.str(
        password.encode(), opslimit=_argon2id.OPSLIMIT_INTERACTIVE, memlimit=_argon2id.MEMLIMIT_INTERACTIVE
    ).decode()


def verify_password(stored: str | None, password: str) -> bool:
    """Constant-time check; with no stored hash it still spends the same work, so timing
    does not tell whether an account exists."""
    try:
        return nacl.pwhash.verify((stored or _DUMMY.decode()).encode(), password.encode()) and stored is not None
    except nacl.exceptions.InvalidkeyError:
        return False

"""Password hashing with argon2id (libsodium through pynacl).

Each hash costs tens of milliseconds of CPU and 64 MiB, so it runs on a pool of its own (one
thread per core; libsodium releases the GIL): a burst of logins at shift change queues there
instead of stalling every open socket on the event loop or the spool's worker threads.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import nacl.exceptions
import nacl.pwhash

from relay.errors import InvalidRequest

MIN_LENGTH = 12
MAX_LENGTH = 256

_argon2id = nacl.pwhash.argon2id
_DUMMY = _argon2id.str(b"relay-dummy-password", opslimit=_argon2id.OPSLIMIT_INTERACTIVE, memlimit=_argon2id.MEMLIMIT_INTERACTIVE)
_HASHING = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="argon2id")


def check_policy(password: str, *, username: str) -> None:
    """Refuse passwords too short, too long, or containing the username."""
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"passwords need at least {MIN_LENGTH} characters", code="weak_password")
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(f"passwords may have at most {MAX_LENGTH} characters", code="weak_password")
    if username and username.lower() in password.lower():
        raise InvalidRequest("the password may not contain the username", code="weak_password")


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, _hash, password)


async def verify_password(stored: str | None, password: str) -> bool:
    """Constant-time check; with no stored hash it still spends the same work, so timing
    does not tell whether an account exists."""
    return await asyncio.get_running_loop().run_in_executor(_HASHING, _verify, stored, password)


def _hash(password: str) -> str:
    return _argon2id.str(
        password.encode(), opslimit=_argon2id.OPSLIMIT_INTERACTIVE, memlimit=_argon2id.MEMLIMIT_INTERACTIVE
    ).decode()


def _verify(stored: str | None, password: str) -> bool:
    try:
        return nacl.pwhash.verify((stored or _DUMMY.decode()).encode(), password.encode()) and stored is not None
    except nacl.exceptions.InvalidkeyError:
        return False

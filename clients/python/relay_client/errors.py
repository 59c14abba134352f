"""The SDK's error types. Every refusal from the relay arrives as a RelayApiError with the
relay's machine-readable code (the same codes the relay's documentation lists)."""

from __future__ import annotations

from typing import Any


class RelayClientError(Exception):
    """Base of every error the SDK raises on purpose."""


class RelayApiError(RelayClientError):
    """The relay refused a REST call or a socket.io event: HTTP status (0 for socket events),
    machine-readable ``code``, human ``message``, optional ``details`` and the seconds the
    relay asked to wait (``Retry-After``) before trying again."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 retry_after: int | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after


class NotLoggedIn(RelayClientError):
    """A call that needs a session was made before logging in."""


class NoDevice(RelayClientError):
    """A call that needs this device's keys was made before registering or loading a device."""


class InsecureKeyFile(RelayClientError):
    """The key file is readable or writable by group or others (or is not a regular file)."""


class KeyFileCorrupt(RelayClientError):
    """The key file cannot be read as a Relay device key file."""


class DeviceRevoked(RelayClientError):
    """This device was revoked; its keys were wiped and it can no longer send or receive."""


class UntrustedDevice(RelayClientError):
    """A device from the key directory failed a check a sender or recipient must make: a key
    signature that does not verify, or an identity key that changed under a known device id."""


class UploadFailed(RelayClientError):
    """An upload could not be completed after the allowed retries."""


class DownloadFailed(RelayClientError):
    """A download could not be completed after the allowed retries."""

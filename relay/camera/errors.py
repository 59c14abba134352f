"""The camera relay's errors, each with its HTTP status and machine-readable code."""

from __future__ import annotations

from relay.errors import ApiError, BadRequest, InvalidRequest


class ChecksumMismatch(ApiError):
    """tus's 460: the bytes do not match the checksum declared for them; they do not count."""

    status, code = 460, "checksum_mismatch"


class Gone(ApiError):
    """The upload or blob existed and has ended (expired, refused or purged)."""

    status, code = 410, "gone"


class EnvelopeRefused(InvalidRequest):
    """The envelope's head parsed, but the relay will not carry it (wrong sender, recipients
    the sender may not address, a length that disagrees with Upload-Length)."""

    code = "envelope_refused"


class UploadInterrupted(BadRequest):
    """The client went away in the middle of a PATCH; what arrived before stays."""

    code = "upload_interrupted"

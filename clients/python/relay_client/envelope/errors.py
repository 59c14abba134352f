"""Why an envelope failed to parse or open (docs/envelope.md, "Errors").

Parsing and opening raise only these, whatever the bytes. Each carries a stable ``code``.
"""

from __future__ import annotations


class EnvelopeError(Exception):
    """Base of every error about an envelope's bytes; never raised by itself."""

    code = "envelope_error"


class MalformedEnvelope(EnvelopeError):
    """The bytes do not follow the v1 layout or break one of its limits."""

    code = "malformed_envelope"


class UnsupportedVersion(EnvelopeError):
    """A Relay envelope (or manifest) of a version this implementation does not read."""

    code = "unsupported_version"


class Truncated(EnvelopeError):
    """The bytes end before the length the header announces."""

    code = "truncated"


class NotARecipient(EnvelopeError):
    """No stanza addresses this device, or none names a key this device still holds."""

    code = "not_a_recipient"


class UnwrapFailed(EnvelopeError):
    """The stanza for this device does not open with the key it names: it was altered, or
    sealed to a different key."""

    code = "unwrap_failed"


class HeaderTampered(EnvelopeError):
    """The header MAC or the content-key commitment does not verify."""

    code = "header_tampered"


class ChunkTampered(EnvelopeError):
    """A payload chunk's tag does not verify: it was altered, moved, duplicated or replaced."""

    code = "chunk_tampered"


class BadSignature(EnvelopeError):
    """The sender's signature does not verify: nothing read from this envelope is authentic."""

    code = "bad_signature"


class MalformedManifest(EnvelopeError):
    """The decrypted manifest is not canonical v1 JSON of the documented schema."""

    code = "malformed_manifest"

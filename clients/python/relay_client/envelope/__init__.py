"""The sealed envelope v1 (docs/envelope.md): seal, open, append recipients."""

from relay_client.envelope.append import append_recipients
from relay_client.envelope.errors import (
    BadSignature,
    ChunkTampered,
    EnvelopeError,
    HeaderTampered,
    MalformedEnvelope,
    MalformedManifest,
    NotARecipient,
    Truncated,
    UnsupportedVersion,
    UnwrapFailed,
)
from relay_client.envelope.format import DEFAULT_CHUNK_SIZE, split_envelope
from relay_client.envelope.keys import (
    DeviceKeyring,
    DeviceKeys,
    KeyPurpose,
    PublishedKey,
    Recipient,
    SenderIdentity,
    UntrustedKey,
)
from relay_client.envelope.manifest import ClinicalMetadata, Consent, Manifest
from relay_client.envelope.open import (
    EnvelopeReader,
    OpenedEnvelope,
    OpenedMessage,
    open_bytes,
    open_file,
    read_envelope,
)
from relay_client.envelope.seal import EnvelopeSecrets, SealedEnvelope, seal, seal_bytes, seal_file

__all__ = [
    "DEFAULT_CHUNK_SIZE", "BadSignature", "ChunkTampered", "ClinicalMetadata", "Consent", "DeviceKeyring", "DeviceKeys",
    "EnvelopeError", "EnvelopeReader", "EnvelopeSecrets", "HeaderTampered", "KeyPurpose", "MalformedEnvelope",
    "MalformedManifest", "Manifest", "NotARecipient", "OpenedEnvelope", "OpenedMessage", "PublishedKey",
    "Recipient", "SealedEnvelope", "SenderIdentity", "Truncated", "UnsupportedVersion", "UntrustedKey",
    "UnwrapFailed", "append_recipients", "open_bytes", "open_file", "read_envelope", "seal", "seal_bytes",
    "seal_file", "split_envelope",
]

// The sealed envelope v1 (docs/envelope.md) in the browser: seal, open, append recipients.
// WebCrypto does AES-256-GCM, HKDF, HMAC, SHA-256, Ed25519 and X25519; @hpke/core does HPKE.
// Mirrors relay_client.envelope (clients/python) module for module, with the same error names
// and codes; the two interoperate byte for byte (tests/test_envelope_browser.py).

export { appendRecipients } from "./append.js";
export {
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
} from "./errors.js";
export { DEFAULT_CHUNK_SIZE, MAX_HEAD_LENGTH, decodeHead, splitEnvelope } from "./format.js";
export {
  DeviceKeys,
  KeyPurpose,
  Recipient,
  SenderIdentity,
  UntrustedKey,
  importEd25519PrivateKey,
  importEd25519PublicKey,
  importX25519KeyPair,
  importX25519PublicKey,
} from "./keys.js";
export { ClinicalMetadata, Manifest } from "./manifest.js";
export { EnvelopeReader, OpenedEnvelope, OpenedMessage, openBlob, openBytes, readEnvelope } from "./open.js";
export { EnvelopeSecrets, SealedEnvelope, seal, sealBlob, sealBytes } from "./seal.js";

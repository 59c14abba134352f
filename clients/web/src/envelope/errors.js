// Why an envelope failed to parse or open (docs/envelope.md, "Errors"). Parsing and opening
// throw only these, whatever the bytes; each carries the stable `code` the Python
// implementation (relay_client.envelope.errors) uses, and the same class name.

/** Base of every error about an envelope's bytes; never thrown by itself. */
export class EnvelopeError extends Error {
  static code = "envelope_error";

  constructor(message) {
    super(message);
    this.name = new.target.name;
  }

  get code() {
    return this.constructor.code;
  }
}

/** The bytes do not follow the v1 layout or break one of its limits. */
export class MalformedEnvelope extends EnvelopeError {
  static code = "malformed_envelope";
}

/** A Relay envelope (or manifest) of a version this implementation does not read. */
export class UnsupportedVersion extends EnvelopeError {
  static code = "unsupported_version";
}

/** The bytes end before the length the header announces. */
export class Truncated extends EnvelopeError {
  static code = "truncated";
}

/** No stanza addresses this device, or none names a key this device still holds. */
export class NotARecipient extends EnvelopeError {
  static code = "not_a_recipient";
}

/** The stanza for this device does not open with the key it names. */
export class UnwrapFailed extends EnvelopeError {
  static code = "unwrap_failed";
}

/** The header MAC or the content-key commitment does not verify. */
export class HeaderTampered extends EnvelopeError {
  static code = "header_tampered";
}

/** A payload chunk's tag does not verify: altered, moved, duplicated or replaced. */
export class ChunkTampered extends EnvelopeError {
  static code = "chunk_tampered";
}

/** The sender's signature does not verify: nothing read from this envelope is authentic. */
export class BadSignature extends EnvelopeError {
  static code = "bad_signature";
}

/** The decrypted manifest is not canonical v1 JSON of the documented schema. */
export class MalformedManifest extends EnvelopeError {
  static code = "malformed_manifest";
}


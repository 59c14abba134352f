// Why the portal page stops: each has a code that names the end page views.js shows.

/** An answer of the portal API other than success: HTTP status, the relay's error code and
 * details (e.g. `attempts_left`). */
export class PortalApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.name = "PortalApiError";
    Object.assign(this, { status, code, details });
  }
}

/** The relay served recipients' keys that do not match the link's commitment, or a key not
 * signed by its committed identity key: the page refuses to seal. */
export class KeysMismatch extends Error {
  constructor(message) {
    super(message);
    this.name = "KeysMismatch";
  }

  get code() {
    return "keys_mismatch";
  }
}

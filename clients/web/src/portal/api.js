// The portal API (docs/portal.md, "Portal API"), called with the session's bearer token on the
// page's own origin. Every refusal becomes a PortalApiError carrying the relay's error code.

import { PortalApiError } from "./errors.js";

export const UPLOADS = "/api/v1/uploads";
const BASE = "/api/v1/portal";

async function failure(response) {
  let error = {};
  try {
    error = (await response.json()).error ?? {};
  } catch {
    // Not the relay's JSON error (a proxy's page): the status alone decides.
  }
  return new PortalApiError(response.status, error.code ?? `http_${response.status}`,
    error.message ?? response.statusText, error.details ?? null);
}

/** One portal session: `open` it with the link, then each step in turn. */
export class PortalApi {
  #token = null;

  constructor(fetcher = globalThis.fetch.bind(globalThis)) {
    this.fetch = fetcher;
  }

  get token() {
    return this.#token;
  }

  async #call(method, path, body = undefined) {
    const headers = {};
    if (this.#token) headers.Authorization = `Bearer ${this.#token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await this.fetch(BASE + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
      });
    } catch {
      throw new PortalApiError(0, "network_error", "the relay could not be reached");
    }
    if (!response.ok) throw await failure(response);
    return response.status === 204 ? null : response.json();
  }

  /** `{verification_method, expires_at, uploads_left}`; keeps the token. */
  async open(invitationId, secret) {
    const session = await this.#call("POST", "/sessions", { invitation_id: invitationId, secret });
    this.#token = session.token;
    return session;
  }

  askForCode() {
    return this.#call("POST", "/code");
  }

  /** `answer` is `{code}` or `{date_of_birth: "YYYY-MM-DD"}`. */
  verify(answer) {
    return this.#call("POST", "/verification", answer);
  }

  /** Once verified: `{recipients: [{device_id, identity_key, encryption_key: {key_id, public_key,
   * signature}}], sealed_note}`. */
  keyBundle() {
    return this.#call("GET", "/recipients");
  }

  recordConsent(consentId, consentSha256) {
    return this.#call("POST", "/consent", { consent_id: consentId, consent_sha256: consentSha256 });
  }

  /** Register the page's ephemeral device; its id. */
  async registerDevice(identityKey, encryptionKey) {
    return (await this.#call("POST", "/device", { identity_key: identityKey, encryption_key: encryptionKey })).device_id;
  }
}

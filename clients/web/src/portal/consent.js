// The patient's consent (docs/portal.md, "Consent"): the scopes they agreed to, their typed
// name and the time, and the SHA-256 of the wording they were shown. The record travels sealed
// in every envelope's manifest; the relay gets only its id and `consent_sha256`, the SHA-256
// (hex) of the record's canonical JSON.

import { sha256, toHex } from "../envelope/bytes.js";
import { canonicalJson } from "../envelope/manifest.js";

/** The scopes in the order they are offered, each with the sentence the patient reads. */
export const SCOPES = Object.freeze([
  Object.freeze({ scope: "treatment", required: true,
    wording: "I agree to send these photos to my care team so they can use them for my care." }),
  Object.freeze({ scope: "teaching", required: false,
    wording: "My care team may also show these photos to train other health professionals." }),
  Object.freeze({ scope: "deidentified_research", required: false,
    wording: "My photos may be used for research once nothing in them can identify me." }),
]);
const MAX_NAME = 200;

/** The full wording shown, one sentence a line: what `text_sha256` covers. */
export function consentText() {
  return SCOPES.map(({ wording }) => wording).join("\n");
}

function newConsentId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return toHex(bytes);
}

/** `{record, sha256}` for the chosen scopes (an array of scope names; "treatment" required) and
 * the typed name; RangeError when the consent is incomplete. */
export async function consentRecord(chosen, typedName, agreedAt = new Date()) {
  const name = typeof typedName === "string" ? typedName.trim() : "";
  if (name.length === 0 || [...name].length > MAX_NAME) {
    throw new RangeError(`type your name (at most ${MAX_NAME} characters)`);
  }
  const missing = SCOPES.filter(({ scope, required }) => required && !chosen.includes(scope));
  if (missing.length > 0) throw new RangeError(`consent to ${missing[0].scope} is required`);
  const record = {
    id: newConsentId(),
    scopes: SCOPES.map(({ scope }) => scope).filter((scope) => chosen.includes(scope)),
    typed_name: name,
    agreed_at: agreedAt.toISOString(),
    text_sha256: toHex(await sha256(new TextEncoder().encode(consentText()))),
  };
  const digest = toHex(await sha256(new TextEncoder().encode(canonicalJson(record))));
  return Object.freeze({ record: Object.freeze(record), sha256: digest });
}

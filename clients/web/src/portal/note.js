// The clinician's sealed note (docs/portal.md, "The sealed note"), delivered with the key
// bundle once the patient is verified:
//
//     key  = HKDF-SHA256(ikm = ascii(secret), salt = empty, info = "relay/v1/portal-note", 32 bytes)
//     note = nonce (12 bytes) || AES-256-GCM(key, nonce, canonical JSON, aad = ascii(commitment))
//
// The JSON is {"v": 1, "text"?: the words shown to the patient, "clinical"?: {patient_ref,
// encounter_ref, body_site, laterality}} — references the page copies into each photo's manifest.
// `secret` and `commitment` are the link's 43 base64url characters each, as they stand.

import { ClinicalMetadata } from "../envelope/manifest.js";
import { decode } from "./base64url.js";

const ascii = (text) => new TextEncoder().encode(text);
const INFO = "relay/v1/portal-note";
const NONCE_LENGTH = 12;
const NOTE_VERSION = 1;
const GIVEN_FIELDS = { patient_ref: "patientRef", encounter_ref: "encounterRef", body_site: "bodySite",
  laterality: "laterality" };

export const NO_NOTE = Object.freeze({ text: null, clinical: {} });

/** The note's references as ClinicalMetadata constructor fields (camelCase); only the ones a clinician may give. */
function clinicalFields(document) {
  if (document === undefined) return {};
  if (document === null || typeof document !== "object" || Array.isArray(document)) throw new RangeError("clinical");
  const fields = {};
  for (const [jsonName, name] of Object.entries(GIVEN_FIELDS)) {
    if (Object.hasOwn(document, jsonName)) fields[name] = document[jsonName];
  }
  new ClinicalMetadata(fields);
  return fields;
}

/** `{text, clinical}` from the sealed note; NO_NOTE when there is none or it does not open (a
 * note that fails to open or to parse is left out rather than shown or used altered). */
export async function openNote(sealedNote, secret, commitment) {
  if (!sealedNote) return NO_NOTE;
  try {
    const sealed = decode(sealedNote);
    const subtle = globalThis.crypto.subtle;
    const ikm = await subtle.importKey("raw", ascii(secret), "HKDF", false, ["deriveKey"]);
    const key = await subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: ascii(INFO) },
      ikm, { name: "AES-GCM", length: 256 }, false, ["decrypt"]);
    const plain = await subtle.decrypt(
      { name: "AES-GCM", iv: sealed.subarray(0, NONCE_LENGTH), additionalData: ascii(commitment) },
      key, sealed.subarray(NONCE_LENGTH));
    const document = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plain));
    if (document?.v !== NOTE_VERSION) return NO_NOTE;
    const text = typeof document.text === "string" ? document.text : null;
    return Object.freeze({ text, clinical: clinicalFields(document.clinical) });
  } catch {
    return NO_NOTE;
  }
}

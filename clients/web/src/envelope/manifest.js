// The manifest at the start of every envelope's plaintext (docs/envelope.md, "The manifest"):
//
//     plaintext = u32 manifest length M || manifest (M bytes of canonical JSON) || content
//
// Canonical JSON: UTF-8, object keys sorted, no whitespace, no floats, integers within
// ±(2^53 - 1), keys of 1 to 64 characters of a-z 0-9 _, valid Unicode. Readers re-encode what
// they parsed and reject anything that is not byte-for-byte canonical, so this and the Python
// implementation (relay_client.envelope.manifest) agree exactly.

import { concat, u32 } from "./bytes.js";
import { MalformedManifest, UnsupportedVersion } from "./errors.js";

export const MANIFEST_VERSION = 1;
export const MAX_MANIFEST_LENGTH = 64 * 1024;
export const LENGTH_PREFIX = 4;
export const MAX_FIELD_LENGTH = 256;
export const LATERALITIES = Object.freeze(["left", "right", "bilateral", "not_applicable"]);
const KEY = /^[a-z0-9_]{1,64}$/;
const CONTENT_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}(?:; ?[\x21-\x7e]+)*$/;
const TIMESTAMP = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,6})?Z$/;
/** The JSON name of each ClinicalMetadata field. */
const CLINICAL_FIELDS = Object.freeze({
  patientRef: "patient_ref",
  encounterRef: "encounter_ref",
  bodySite: "body_site",
  laterality: "laterality",
  capturedAt: "captured_at",
  capturedBy: "captured_by",
  consentRef: "consent_ref",
});

const codePoints = (text) => [...text].length;

function isTimestamp(value) {
  const match = TIMESTAMP.exec(value);
  if (!match) return false;
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  return year >= 1 && days !== undefined && day >= 1 && day <= days && hour < 24 && minute < 60 && second < 60;
}

/** What the content is about. Every field is optional; present strings are 1 to 256 characters. */
export class ClinicalMetadata {
  constructor(fields = {}) {
    for (const [name, value] of Object.entries(fields)) {
      if (!Object.hasOwn(CLINICAL_FIELDS, name)) throw new RangeError(`clinical metadata has no field ${name}`);
      const jsonName = CLINICAL_FIELDS[name];
      if (value === undefined || value === null) continue;
      if (typeof value !== "string" || !value.isWellFormed() || codePoints(value) < 1
          || codePoints(value) > MAX_FIELD_LENGTH) {
        throw new RangeError(`clinical.${jsonName} must be a string of 1 to ${MAX_FIELD_LENGTH} characters`);
      }
      this[name] = value;
    }
    if (this.laterality !== undefined && !LATERALITIES.includes(this.laterality)) {
      throw new RangeError(`clinical.laterality must be one of ${LATERALITIES.join(", ")}`);
    }
    if (this.capturedAt !== undefined && !isTimestamp(this.capturedAt)) {
      throw new RangeError("clinical.captured_at must be RFC 3339 UTC, e.g. 2025-01-31T14:05:00Z");
    }
    Object.freeze(this);
  }

  /** The JSON object the manifest carries under "clinical". */
  toJson() {
    const document = {};
    for (const [name, jsonName] of Object.entries(CLINICAL_FIELDS)) {
      if (this[name] !== undefined) document[jsonName] = this[name];
    }
    return document;
  }

  /** From the JSON object: unknown members are ignored (a later revision may add some). */
  static fromJson(document) {
    const fields = {};
    for (const [name, jsonName] of Object.entries(CLINICAL_FIELDS)) {
      if (Object.hasOwn(document, jsonName)) fields[name] = document[jsonName];
    }
    return new ClinicalMetadata(fields);
  }
}

/** The content's type and its clinical metadata; sealed, so only recipients read it. */
export class Manifest {
  constructor(contentType, clinical = null) {
    if (typeof contentType !== "string" || contentType.length > MAX_FIELD_LENGTH || !CONTENT_TYPE.test(contentType)) {
      throw new RangeError("content_type must be a lowercase media type such as image/jpeg");
    }
    if (clinical !== null && !(clinical instanceof ClinicalMetadata)) {
      throw new TypeError("clinical must be a ClinicalMetadata");
    }
    Object.assign(this, { contentType, clinical });
    Object.freeze(this);
  }

  toJson() {
    const document = { v: MANIFEST_VERSION, content_type: this.contentType };
    if (this.clinical !== null) document.clinical = this.clinical.toJson();
    return document;
  }

  /** The canonical JSON bytes, or RangeError when they exceed the 64 KiB limit. */
  encode() {
    const encoded = new TextEncoder().encode(canonicalJson(this.toJson()));
    if (encoded.length > MAX_MANIFEST_LENGTH) {
      throw new RangeError(`the manifest encodes to ${encoded.length} bytes; the limit is ${MAX_MANIFEST_LENGTH}`);
    }
    return encoded;
  }

  /** u32 length || canonical JSON: the first bytes of the plaintext. */
  frame() {
    const encoded = this.encode();
    return concat(u32(encoded.length), encoded);
  }

  /** Parse manifest bytes; throws only MalformedManifest or UnsupportedVersion. Fields a later
   * minor revision adds are ignored; a different "v" is unsupported. */
  static decode(data) {
    let text;
    let document;
    try {
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(data);
      document = JSON.parse(text);
    } catch (error) {
      throw new MalformedManifest(`the manifest is not valid JSON: ${error.message}`);
    }
    if (!isObject(document)) throw new MalformedManifest("the manifest is not a JSON object");
    let canonical;
    try {
      canonical = canonicalJson(document);
    } catch {
      throw new MalformedManifest("the manifest cannot be encoded canonically");
    }
    if (canonical !== text) {
      throw new MalformedManifest("the manifest is not canonical JSON (sorted keys, no whitespace)");
    }
    const version = document.v;
    if (!Number.isInteger(version)) throw new MalformedManifest('the manifest has no integer version "v"');
    if (version !== MANIFEST_VERSION) {
      throw new UnsupportedVersion(`manifest version ${version} is not supported (this reads ${MANIFEST_VERSION})`);
    }
    const clinical = document.clinical ?? null;
    if (clinical !== null && !isObject(clinical)) throw new MalformedManifest("clinical must be an object");
    try {
      return new Manifest(document.content_type, clinical === null ? null : ClinicalMetadata.fromJson(clinical));
    } catch (error) {
      throw new MalformedManifest(error.message);
    }
  }
}

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * `value` as canonical JSON text: keys sorted by code point, no whitespace, strings escaped as
 * JSON.stringify and Python's json.dumps(ensure_ascii=False) both do. RangeError for anything
 * canonical JSON cannot hold: non-integers, integers beyond ±(2^53 - 1), lone surrogates, keys
 * outside a-z 0-9 _ (1 to 64 characters).
 */
export function canonicalJson(value) {
  if (value === null || typeof value === "boolean") return String(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new RangeError("canonical JSON holds only integers within ±(2^53 - 1)");
    return String(value);
  }
  if (typeof value === "string") {
    if (!value.isWellFormed()) throw new RangeError("canonical JSON strings are valid Unicode");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (isObject(value)) {
    const keys = Object.keys(value).sort();
    for (const key of keys) {
      if (!KEY.test(key)) throw new RangeError("manifest keys are 1 to 64 characters of a-z 0-9 _");
    }
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key])}`).join(",")}}`;
  }
  throw new RangeError(`canonical JSON cannot hold ${typeof value}`);
}

/** The manifest length M from the plaintext's first 4 bytes, checked against the limits. */
export function parseFrameLength(prefix, plaintextLength) {
  if (plaintextLength < LENGTH_PREFIX) throw new MalformedManifest("the plaintext is too short to hold a manifest");
  const length = new DataView(prefix.buffer, prefix.byteOffset, LENGTH_PREFIX).getUint32(0);
  if (length < 2 || length > Math.min(MAX_MANIFEST_LENGTH, plaintextLength - LENGTH_PREFIX)) {
    throw new MalformedManifest(`manifest length ${length} is out of range`);
  }
  return length;
}

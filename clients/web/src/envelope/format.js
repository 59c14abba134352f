// The v1 byte layout (docs/envelope.md, "Layout"): constants, and the head (fixed header +
// stanza section) as values that encode to and decode from exact bytes.
//
//     envelope = head || body
//     head     = fixed header (91) || stanza count (u16) || stanzas || header MAC (32)
//     body     = chunk_0 || ... || chunk_{n-1} || signature (64)
//
// All integers are unsigned big-endian. Decoding throws only MalformedEnvelope,
// UnsupportedVersion or Truncated.

import { ascii, concat, fromHex, sha256, toHex, u16 } from "./bytes.js";
import { MalformedEnvelope, Truncated, UnsupportedVersion } from "./errors.js";
import { KEY_ID } from "./keys.js";

export const MAGIC = ascii("RLYE");
export const VERSION = 1;
export const FIXED_HEADER_LENGTH = 91;
export const COUNT_LENGTH = 2;
export const ID_LENGTH = 16;
export const NONCE_PREFIX_LENGTH = 7;
export const COMMITMENT_LENGTH = 32;
export const CONTENT_KEY_LENGTH = 32;
export const ENC_LENGTH = 32;
export const WRAPPED_KEY_LENGTH = CONTENT_KEY_LENGTH + 16;
export const MAC_LENGTH = 32;
export const TAG_LENGTH = 16;
export const SIGNATURE_LENGTH = 64;

export const MIN_CHUNK_SIZE = 16 * 1024;
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024;
export const DEFAULT_CHUNK_SIZE = 64 * 1024;
export const MAX_PLAINTEXT_LENGTH = 2 ** 40;
export const MAX_STANZAS = 1000;
export const MAX_KEY_ID_LENGTH = 64;
export const STANZA_PREFIX_LENGTH = ID_LENGTH + 1;
export const STANZA_SUFFIX_LENGTH = ENC_LENGTH + WRAPPED_KEY_LENGTH;
export const MAX_HEAD_LENGTH = FIXED_HEADER_LENGTH + COUNT_LENGTH + MAC_LENGTH
  + MAX_STANZAS * (STANZA_PREFIX_LENGTH + MAX_KEY_ID_LENGTH + STANZA_SUFFIX_LENGTH);
export const PREAMBLE_LENGTH = MAGIC.length + 1;

/** n = max(1, ceil(L / S)): an empty payload is one empty final chunk. */
export function chunkCount(plaintextLength, chunkSize) {
  return Math.max(1, Math.ceil(plaintextLength / chunkSize));
}

const FIXED_HEADER_FIELDS = Object.freeze([
  "envelopeId", "senderDeviceId", "chunkSize", "plaintextLength", "sealedStanzaCount", "noncePrefix", "commitment",
]);

/** The first 91 bytes: everything about the envelope that never changes after sealing. */
export class FixedHeader {
  constructor(fields) {
    for (const name of FIXED_HEADER_FIELDS) this[name] = fields[name];
    this.encoded = this.#encode();
    this.chunkCount = chunkCount(this.plaintextLength, this.chunkSize);
    this.bodyLength = this.plaintextLength + TAG_LENGTH * this.chunkCount + SIGNATURE_LENGTH;
    this.digestPromise = null;
    Object.seal(this);
  }

  #encode() {
    const bytes = new Uint8Array(FIXED_HEADER_LENGTH);
    const view = new DataView(bytes.buffer);
    bytes.set(MAGIC, 0);
    bytes[4] = VERSION;
    bytes[5] = 0;
    bytes.set(fromHex(this.envelopeId), 6);
    bytes.set(fromHex(this.senderDeviceId), 22);
    view.setUint32(38, this.chunkSize);
    view.setBigUint64(42, BigInt(this.plaintextLength));
    view.setUint16(50, this.sealedStanzaCount);
    bytes.set(this.noncePrefix, 52);
    bytes.set(this.commitment, 59);
    return bytes;
  }

  /** SHA-256 of the encoded fixed header: the chunks' AAD, HPKE info's anchor, the digest chain's start. */
  digest() {
    this.digestPromise ??= sha256(this.encoded);
    return this.digestPromise;
  }

  /** The plaintext length of chunk `index`: S for all but the last. */
  chunkLength(index) {
    if (index < this.chunkCount - 1) return this.chunkSize;
    return this.plaintextLength - (this.chunkCount - 1) * this.chunkSize;
  }
}

/** The content key wrapped for one recipient device with HPKE. */
export class Stanza {
  constructor(recipientDeviceId, keyId, enc, wrappedKey) {
    Object.assign(this, { recipientDeviceId, keyId, enc, wrappedKey });
    Object.freeze(this);
  }

  encode() {
    const keyId = ascii(this.keyId);
    return concat(fromHex(this.recipientDeviceId), [keyId.length], keyId, this.enc, this.wrappedKey);
  }
}

/** The fixed header, the stanza section and the header MAC. */
export class Head {
  constructor(header, stanzas, mac) {
    Object.assign(this, { header, stanzas: Object.freeze([...stanzas]), mac });
    Object.freeze(this);
  }

  /** What the header MAC covers: fixed header || stanza count || every stanza. */
  macInput() {
    return concat(this.header.encoded, u16(this.stanzas.length), ...this.stanzas.map((stanza) => stanza.encode()));
  }

  encode() {
    return concat(this.macInput(), this.mac);
  }

  /** SHA-256 of the stanzas the sender sealed (the first k): the sender's signature covers it. */
  sealedStanzasDigest() {
    const sealed = this.stanzas.slice(0, this.header.sealedStanzaCount);
    return sha256(concat(...sealed.map((stanza) => stanza.encode())));
  }

  /** `[index, stanza]` of the stanza addressing `deviceId`, or null. */
  stanzaFor(deviceId) {
    const index = this.stanzas.findIndex((stanza) => stanza.recipientDeviceId === deviceId);
    return index < 0 ? null : [index, this.stanzas[index]];
  }
}

/** Magic, then version: what tells a v1 envelope from other bytes and from other versions. */
export function checkPreamble(data) {
  for (let index = 0; index < Math.min(data.length, MAGIC.length); index += 1) {
    if (data[index] !== MAGIC[index]) throw new MalformedEnvelope("not a Relay envelope (bad magic)");
  }
  if (data.length < PREAMBLE_LENGTH) throw new Truncated("the envelope ends inside its fixed header");
  if (data[MAGIC.length] !== VERSION) {
    throw new UnsupportedVersion(`envelope version ${data[MAGIC.length]} is not supported (this reads ${VERSION})`);
  }
}

/** Decode and check the 91-byte fixed header (`data` may be longer). */
export function decodeFixedHeader(data) {
  checkPreamble(data);
  if (data.length < FIXED_HEADER_LENGTH) throw new Truncated("the envelope ends inside its fixed header");
  const view = new DataView(data.buffer, data.byteOffset, FIXED_HEADER_LENGTH);
  if (data[5] !== 0) throw new MalformedEnvelope("reserved flags must be zero in v1");
  const chunkSize = view.getUint32(38);
  if (chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new MalformedEnvelope(`chunk size ${chunkSize} is outside ${MIN_CHUNK_SIZE}..${MAX_CHUNK_SIZE}`);
  }
  const length = view.getBigUint64(42);
  if (length > BigInt(MAX_PLAINTEXT_LENGTH)) {
    throw new MalformedEnvelope(`plaintext length ${length} exceeds ${MAX_PLAINTEXT_LENGTH}`);
  }
  const sealed = view.getUint16(50);
  if (sealed < 1 || sealed > MAX_STANZAS) {
    throw new MalformedEnvelope(`sealed stanza count ${sealed} is outside 1..${MAX_STANZAS}`);
  }
  return new FixedHeader({
    envelopeId: toHex(data.subarray(6, 22)),
    senderDeviceId: toHex(data.subarray(22, 38)),
    chunkSize,
    plaintextLength: Number(length),
    sealedStanzaCount: sealed,
    noncePrefix: data.slice(52, 59),
    commitment: data.slice(59, 91),
  });
}

export function checkStanzaCount(header, count) {
  if (count < header.sealedStanzaCount || count > MAX_STANZAS) {
    throw new MalformedEnvelope(`stanza count ${count} is outside ${header.sealedStanzaCount}..${MAX_STANZAS}`);
  }
}

export function checkKeyIdLength(length) {
  if (length < 1 || length > MAX_KEY_ID_LENGTH) {
    throw new MalformedEnvelope(`key id length ${length} is outside 1..${MAX_KEY_ID_LENGTH}`);
  }
}

function readCount(data, offset) {
  return new DataView(data.buffer, data.byteOffset + offset, COUNT_LENGTH).getUint16(0);
}

/** The length of the head that `data` starts with, or Truncated if `data` ends inside it. */
export function headLength(data) {
  const header = decodeFixedHeader(data);
  let position = FIXED_HEADER_LENGTH + COUNT_LENGTH;
  if (data.length < position) throw new Truncated("the envelope ends inside its stanza section");
  const count = readCount(data, FIXED_HEADER_LENGTH);
  checkStanzaCount(header, count);
  for (let index = 0; index < count; index += 1) {
    if (data.length < position + STANZA_PREFIX_LENGTH) throw new Truncated("the envelope ends inside a stanza");
    const keyIdLength = data[position + ID_LENGTH];
    checkKeyIdLength(keyIdLength);
    position += STANZA_PREFIX_LENGTH + keyIdLength + STANZA_SUFFIX_LENGTH;
  }
  position += MAC_LENGTH;
  if (data.length < position) throw new Truncated("the envelope ends inside its stanza section");
  return position;
}

/** Decode a head that is exactly `data`; every limit is checked. */
export function decodeHead(data) {
  if (headLength(data) !== data.length) {
    throw new MalformedEnvelope("bytes follow the header MAC where the head should end");
  }
  const header = decodeFixedHeader(data);
  const count = readCount(data, FIXED_HEADER_LENGTH);
  let position = FIXED_HEADER_LENGTH + COUNT_LENGTH;
  const stanzas = [];
  const seen = new Set();
  for (let index = 0; index < count; index += 1) {
    const recipient = toHex(data.subarray(position, position + ID_LENGTH));
    const keyIdLength = data[position + ID_LENGTH];
    position += STANZA_PREFIX_LENGTH;
    const keyId = String.fromCharCode(...data.subarray(position, position + keyIdLength));
    position += keyIdLength;
    if (!KEY_ID.test(keyId)) throw new MalformedEnvelope("a key id holds characters outside A-Z a-z 0-9 _ -");
    if (seen.has(recipient)) throw new MalformedEnvelope("two stanzas address the same device");
    seen.add(recipient);
    const enc = data.slice(position, position + ENC_LENGTH);
    const wrapped = data.slice(position + ENC_LENGTH, position + STANZA_SUFFIX_LENGTH);
    position += STANZA_SUFFIX_LENGTH;
    stanzas.push(new Stanza(recipient, keyId, enc, wrapped));
  }
  return new Head(header, stanzas, data.slice(position, position + MAC_LENGTH));
}

/** Split a whole envelope into its head and its body (chunks and signature). */
export function splitEnvelope(data) {
  const length = headLength(data);
  return [data.subarray(0, length), data.subarray(length)];
}

// The keys an envelope involves, as WebCrypto CryptoKeys: the recipients' published X25519
// keys, the sender's Ed25519 identity key, and the X25519 key pairs a device opens with.
//
// A device's identity key signs every X25519 key it publishes (docs/keys.md):
//
//     "relay/v1/encryption-key" || 0x00 || key_id (ASCII) || 0x00 || x25519_public_key
//     "relay/v1/one-time-key"   || 0x00 || key_id (ASCII) || 0x00 || x25519_public_key
//
// `Recipient.fromDirectory` checks that signature before anything is sealed to a key.

import { ascii, asBytes, concat, fromHex } from "./bytes.js";

const DEVICE_ID = /^[0-9a-f]{32}$/;
export const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;
const subtle = () => globalThis.crypto.subtle;

/** A published key whose signature does not verify under the device's identity key. */
export class UntrustedKey extends Error {
  constructor(message) {
    super(message);
    this.name = "UntrustedKey";
  }

  get code() {
    return "untrusted_key";
  }
}

/** What a published X25519 key is for; the value is the domain its signature covers. */
export const KeyPurpose = Object.freeze({
  ENCRYPTION: "relay/v1/encryption-key",
  ONE_TIME: "relay/v1/one-time-key",
});

/** The 16 bytes of a Relay device id (32 lowercase hex characters), or RangeError. */
export function checkDeviceId(deviceId) {
  if (typeof deviceId !== "string" || !DEVICE_ID.test(deviceId)) {
    throw new RangeError("a device id is 32 lowercase hex characters");
  }
  return fromHex(deviceId);
}

/** The ASCII bytes of a key id (1 to 64 of A-Z a-z 0-9 _ -), or RangeError. */
export function checkKeyId(keyId) {
  if (typeof keyId !== "string" || !KEY_ID.test(keyId)) {
    throw new RangeError("a key id is 1 to 64 characters of A-Z a-z 0-9 _ -");
  }
  return ascii(keyId);
}

/** What the identity key signs for a published X25519 key. */
export function signedMessage(purpose, keyId, publicKey) {
  return concat(ascii(purpose), [0], checkKeyId(keyId), [0], asBytes(publicKey));
}

/** An X25519 public key from its 32 raw bytes. */
export function importX25519PublicKey(raw) {
  return subtle().importKey("raw", asBytes(raw), { name: "X25519" }, true, []);
}

/** An X25519 key pair from the private key's PKCS#8 DER and the public key's raw bytes; the
 * private key is not extractable unless asked. HPKE needs the public half to open. */
export async function importX25519KeyPair(pkcs8, rawPublicKey, { extractable = false } = {}) {
  return {
    privateKey: await subtle().importKey("pkcs8", asBytes(pkcs8), { name: "X25519" }, extractable, ["deriveBits"]),
    publicKey: await importX25519PublicKey(rawPublicKey),
  };
}

/** An Ed25519 public (identity) key from its 32 raw bytes. */
export function importEd25519PublicKey(raw) {
  return subtle().importKey("raw", asBytes(raw), { name: "Ed25519" }, true, ["verify"]);
}

/** An Ed25519 private (identity) key from its PKCS#8 DER; not extractable unless asked. */
export function importEd25519PrivateKey(pkcs8, { extractable = false } = {}) {
  return subtle().importKey("pkcs8", asBytes(pkcs8), { name: "Ed25519" }, extractable, ["sign"]);
}

function checkKey(key, algorithm, type, what) {
  if (!(key instanceof CryptoKey) || key.algorithm.name !== algorithm || key.type !== type) {
    throw new TypeError(`${what} must be an ${algorithm} ${type} CryptoKey`);
  }
}

/** One recipient device and the X25519 public key its stanza is sealed to. */
export class Recipient {
  constructor(deviceId, keyId, publicKey) {
    checkDeviceId(deviceId);
    checkKeyId(keyId);
    checkKey(publicKey, "X25519", "public", "a recipient key");
    Object.assign(this, { deviceId, keyId, publicKey });
    Object.freeze(this);
  }

  /**
   * The recipient for a directory entry: its one-time key when one was claimed, else its signed
   * encryption key. Keys are `{keyId, publicKey, signature}` with raw bytes; `identityKey` is
   * the device's raw Ed25519 key. Throws UntrustedKey unless the chosen key's signature verifies.
   */
  static async fromDirectory(deviceId, identityKey, encryptionKey, oneTimeKey = null) {
    const [purpose, chosen] = oneTimeKey
      ? [KeyPurpose.ONE_TIME, oneTimeKey]
      : [KeyPurpose.ENCRYPTION, encryptionKey];
    const untrusted = () => new UntrustedKey(
      `key ${JSON.stringify(chosen.keyId)} of device ${deviceId} is not signed by its identity key`);
    let verified = false;
    let publicKey;
    try {
      const message = signedMessage(purpose, chosen.keyId, chosen.publicKey);
      const identity = await importEd25519PublicKey(identityKey);
      verified = await subtle().verify("Ed25519", identity, asBytes(chosen.signature), message);
      publicKey = await importX25519PublicKey(chosen.publicKey);
    } catch {
      throw untrusted();
    }
    if (!verified) throw untrusted();
    return new Recipient(deviceId, chosen.keyId, publicKey);
  }
}

/** The sealing device: its id and the Ed25519 identity key that signs its envelopes. */
export class SenderIdentity {
  constructor(deviceId, signingKey) {
    checkDeviceId(deviceId);
    checkKey(signingKey, "Ed25519", "private", "a signing key");
    Object.assign(this, { deviceId, signingKey });
    Object.freeze(this);
  }
}

/** What a device opens envelopes with: its id and its X25519 key pairs by key id (the signed
 * encryption key, and the one-time keys it has not yet used up). */
export class DeviceKeys {
  constructor(deviceId, keyPairs) {
    checkDeviceId(deviceId);
    const pairs = new Map(keyPairs instanceof Map ? keyPairs : Object.entries(keyPairs));
    for (const [keyId, pair] of pairs) {
      checkKeyId(keyId);
      checkKey(pair.privateKey, "X25519", "private", `key ${keyId}`);
      checkKey(pair.publicKey, "X25519", "public", `key ${keyId}`);
    }
    Object.assign(this, { deviceId, keyPairs: pairs });
    Object.freeze(this);
  }
}

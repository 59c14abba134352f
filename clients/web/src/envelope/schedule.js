// Every key, nonce, label and digest derived while sealing or opening (docs/envelope.md,
// "Key schedule"). Primitives come from WebCrypto, HPKE from @hpke/core (vendored by
// tools/vendor.mjs at the version package-lock.json pins); nothing here is home-made.

import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from "../../vendor/@hpke/core/esm/mod.js";
import { ascii, concat, fromHex, sha256, u32 } from "./bytes.js";
import { checkKeyId } from "./keys.js";

export const PAYLOAD_KEY_INFO = ascii("relay/v1/payload-key");
export const HEADER_MAC_KEY_INFO = ascii("relay/v1/header-mac-key");
export const COMMITMENT_INFO = ascii("relay/v1/key-commitment");
export const WRAP_LABEL = ascii("relay/v1/wrap");
export const SIGNATURE_LABEL = ascii("relay/v1/envelope-signature");

/** RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM; base mode, single shot. */
export const HPKE = new CipherSuite({
  kem: new DhkemX25519HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Aes256Gcm(),
});

const subtle = () => globalThis.crypto.subtle;

/**
 * The three values derived from one envelope's content key with HKDF-SHA256 (ikm = content
 * key, salt = envelope id, info = label, 32 bytes each): the payload key (AES-256-GCM) and
 * the header MAC key (HMAC-SHA256) as non-extractable CryptoKeys, and the key commitment.
 */
export async function derive(contentKey, envelopeId) {
  const ikm = await subtle().importKey("raw", contentKey, "HKDF", false, ["deriveBits", "deriveKey"]);
  const hkdf = (info) => ({ name: "HKDF", hash: "SHA-256", salt: fromHex(envelopeId), info });
  const [payloadKey, headerMacKey, commitment] = await Promise.all([
    subtle().deriveKey(hkdf(PAYLOAD_KEY_INFO), ikm, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]),
    subtle().deriveKey(hkdf(HEADER_MAC_KEY_INFO), ikm, { name: "HMAC", hash: "SHA-256", length: 256 }, false,
      ["sign", "verify"]),
    subtle().deriveBits(hkdf(COMMITMENT_INFO), ikm, 256),
  ]);
  return { payloadKey, headerMacKey, commitment: new Uint8Array(commitment) };
}

/** HPKE info: label || 0x00 || SHA-256(fixed header) || device id || u8 len || key id. */
export function wrapInfo(headerDigest, deviceId, keyId) {
  const rawKeyId = checkKeyId(keyId);
  return concat(WRAP_LABEL, [0], headerDigest, fromHex(deviceId), [rawKeyId.length], rawKeyId);
}

/** RFC 9180 base mode, single shot, empty AAD: `{enc, ct}` (32 and 48 bytes) for `publicKey`. */
export async function hpkeWrap(contentKey, publicKey, info) {
  const { enc, ct } = await HPKE.seal({ recipientPublicKey: publicKey, info }, contentKey);
  return { enc: new Uint8Array(enc), ct: new Uint8Array(ct) };
}

/** The content key from a stanza's `enc` and `ct`; throws (any error) when it does not open. */
export async function hpkeUnwrap(enc, ct, keyPair, info) {
  return new Uint8Array(await HPKE.open({ recipientKey: keyPair, enc, info }, ct));
}

export async function headerMac(macKey, macInput) {
  return new Uint8Array(await subtle().sign("HMAC", macKey, macInput));
}

/** True when `mac` is the header MAC of `macInput`; WebCrypto compares in constant time. */
export function verifyHeaderMac(macKey, mac, macInput) {
  return subtle().verify("HMAC", macKey, mac, macInput);
}

/** nonce_prefix (7) || u32 chunk index || 0x01 for the last chunk, else 0x00. */
export function chunkNonce(prefix, index, last) {
  return concat(prefix, u32(index), [last ? 1 : 0]);
}

/**
 * The digest chain over the body's chunks: D_0 = SHA-256(fixed header),
 * D_{i+1} = SHA-256(D_i || SHA-256(chunk_i)), each chunk as on the wire (ciphertext || tag).
 * Chunk digests may be computed in parallel; `fold` them in chunk order.
 */
export class PayloadDigest {
  constructor(headerDigest) {
    this.value = headerDigest;
  }

  async fold(chunkDigest) {
    this.value = await sha256(concat(this.value, chunkDigest));
  }
}

/** What the sender's Ed25519 key signs: label || 0x00 || three SHA-256 digests (116 bytes). */
export function signatureMessage(headerDigest, sealedStanzasDigest, payloadDigest) {
  return concat(SIGNATURE_LABEL, [0], headerDigest, sealedStanzasDigest, payloadDigest);
}

// Unpadded base64url (RFC 4648 §5), the encoding of every key, signature, secret and hash the
// portal API and the link carry.

const ALPHABET = /^[A-Za-z0-9_-]*$/;

/** `bytes` as unpadded base64url. */
export function encode(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** The bytes of unpadded base64url text; RangeError for anything else. */
export function decode(text) {
  if (typeof text !== "string" || !ALPHABET.test(text) || text.length % 4 === 1) {
    throw new RangeError("expected unpadded base64url");
  }
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  const bytes = Uint8Array.from(binary, (character) => character.charCodeAt(0));
  if (encode(bytes) !== text) throw new RangeError("expected canonical unpadded base64url");
  return bytes;
}

// The link's commitment to the recipients' identity keys (docs/portal.md, "The link, the
// secret and the key commitment"):
//
//     commitment = base64url(SHA-256(canonical JSON {"recipients": [{device_id, identity_key}], "v": 1}))
//
// with recipients sorted by device_id. The page seals only to a key bundle whose identity keys
// hash to the commitment and whose encryption keys each verify under their identity key.

import { sha256 } from "../envelope/bytes.js";
import { Recipient } from "../envelope/keys.js";
import { canonicalJson } from "../envelope/manifest.js";
import { decode, encode } from "./base64url.js";
import { KeysMismatch } from "./errors.js";

const COMMITMENT_VERSION = 1;

/** The commitment (base64url) to `recipients`, each `{device_id, identity_key}`. */
export async function commitmentOf(recipients) {
  const committed = recipients
    .map(({ device_id, identity_key }) => ({ device_id, identity_key }))
    .sort((a, b) => (a.device_id < b.device_id ? -1 : a.device_id > b.device_id ? 1 : 0));
  const text = canonicalJson({ recipients: committed, v: COMMITMENT_VERSION });
  return encode(await sha256(new TextEncoder().encode(text)));
}

/** The Recipients to seal to, from the relay's key bundle, or KeysMismatch when the bundle
 * does not match `commitment` or a key is not signed by its identity key. */
export async function verifiedRecipients(bundle, commitment) {
  if (!Array.isArray(bundle) || bundle.length === 0) throw new KeysMismatch("the relay served no recipients");
  let actual;
  try {
    actual = await commitmentOf(bundle);
  } catch {
    throw new KeysMismatch("the relay served a malformed key bundle");
  }
  if (actual !== commitment) throw new KeysMismatch("the recipients' keys do not match the link");
  try {
    return await Promise.all(bundle.map(({ device_id, identity_key, encryption_key }) => Recipient.fromDirectory(
      device_id, decode(identity_key),
      { keyId: encryption_key.key_id, publicKey: decode(encryption_key.public_key),
        signature: decode(encryption_key.signature) })));
  } catch {
    throw new KeysMismatch("a recipient's encryption key is not signed by its committed identity key");
  }
}

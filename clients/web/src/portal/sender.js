// The page's own device, the sender of its envelopes: an Ed25519 identity key and a signed
// X25519 encryption key made in this page (private halves not extractable, never stored),
// registered with POST /api/v1/portal/device. It ends with the invitation.

import { toHex } from "../envelope/bytes.js";
import { KeyPurpose, SenderIdentity, signedMessage } from "../envelope/keys.js";
import { encode } from "./base64url.js";

const subtle = () => globalThis.crypto.subtle;

/** A SenderIdentity for a new device registered through `api` (a PortalApi). */
export async function registerSender(api) {
  const identity = await subtle().generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const encryption = await subtle().generateKey({ name: "X25519" }, false, ["deriveBits"]);
  const identityKey = new Uint8Array(await subtle().exportKey("raw", identity.publicKey));
  const publicKey = new Uint8Array(await subtle().exportKey("raw", encryption.publicKey));
  const keyId = `portal-${toHex(crypto.getRandomValues(new Uint8Array(8)))}`;
  const signature = new Uint8Array(await subtle().sign("Ed25519", identity.privateKey,
    signedMessage(KeyPurpose.ENCRYPTION, keyId, publicKey)));
  const deviceId = await api.registerDevice(encode(identityKey),
    { key_id: keyId, public_key: encode(publicKey), signature: encode(signature) });
  return new SenderIdentity(deviceId, identity.privateKey);
}

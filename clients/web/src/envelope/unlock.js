// Recovering an envelope's content key from its head with one device's private key, and
// checking the head with it: the step opening and appending share.

import { constantTimeEqual } from "./bytes.js";
import { HeaderTampered, NotARecipient, UnwrapFailed } from "./errors.js";
import { derive, hpkeUnwrap, verifyHeaderMac, wrapInfo } from "./schedule.js";

/**
 * Unwrap the content key from `device`'s stanza (a DeviceKeys), then check the key commitment
 * and the header MAC. Returns `{contentKey, keys, stanzaIndex, keyId}`; throws NotARecipient,
 * UnwrapFailed or HeaderTampered.
 */
export async function unlock(head, device) {
  const found = head.stanzaFor(device.deviceId);
  if (found === null) throw new NotARecipient("no stanza in this envelope addresses this device");
  const [stanzaIndex, stanza] = found;
  const keyPair = device.keyPairs.get(stanza.keyId);
  if (keyPair === undefined) {
    throw new NotARecipient(`this device holds no private key with id ${JSON.stringify(stanza.keyId)}`);
  }
  const info = wrapInfo(await head.header.digest(), device.deviceId, stanza.keyId);
  let contentKey;
  try {
    contentKey = await hpkeUnwrap(stanza.enc, stanza.wrappedKey, keyPair, info);
  } catch {
    throw new UnwrapFailed("the stanza for this device does not open with its key");
  }
  const keys = await derive(contentKey, head.header.envelopeId);
  if (!constantTimeEqual(keys.commitment, head.header.commitment)) {
    throw new HeaderTampered("the content key does not match the header's commitment");
  }
  if (!(await verifyHeaderMac(keys.headerMacKey, head.mac, head.macInput()))) {
    throw new HeaderTampered("the header MAC does not verify");
  }
  return { contentKey, keys, stanzaIndex, keyId: stanza.keyId };
}

// Adding recipients to a sealed envelope without touching its body.
//
// A device that can open the envelope unwraps the content key from its own stanza, wraps it for
// each new recipient, and recomputes the header MAC. The fixed header, the sealed stanzas and
// the body stay byte for byte the same, so the sender's signature still verifies; the new
// stanzas are authenticated by the header MAC only (docs/envelope.md, "Appending recipients").
// The relay stores head and body apart, so only the new head travels.

import { asBytes } from "./bytes.js";
import { Head, decodeHead } from "./format.js";
import { headerMac, hpkeWrap } from "./schedule.js";
import { checkRecipients, wrapStanza } from "./seal.js";
import { unlock } from "./unlock.js";

/**
 * The envelope's new head with a stanza for each of `recipients` after the existing ones.
 * `head` is the envelope's head (`splitEnvelope` cuts it from a whole envelope); `device` (a
 * DeviceKeys) must be able to open it. Throws an EnvelopeError if it cannot, RangeError if a
 * recipient is already addressed or the stanza limit would be passed.
 */
export async function appendRecipients(head, device, recipients, { wrap = hpkeWrap } = {}) {
  const parsed = decodeHead(asBytes(head));
  const unlocked = await unlock(parsed, device);
  checkRecipients(recipients, parsed.stanzas.map((stanza) => stanza.recipientDeviceId));
  const headerDigest = await parsed.header.digest();
  const added = await Promise.all(
    recipients.map((recipient) => wrapStanza(unlocked.contentKey, headerDigest, recipient, wrap)));
  const stanzas = [...parsed.stanzas, ...added];
  const unsigned = new Head(parsed.header, stanzas, new Uint8Array(0));
  const mac = await headerMac(unlocked.keys.headerMacKey, unsigned.macInput());
  return new Head(parsed.header, stanzas, mac).encode();
}

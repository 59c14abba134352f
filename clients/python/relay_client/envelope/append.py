"""Adding recipients to a sealed envelope without touching its body.

A device that can open the envelope unwraps the content key from its own stanza, wraps it for
each new recipient, and recomputes the header MAC. The fixed header, the sealed stanzas and
the body stay byte for byte the same, so the sender's signature still verifies; the new
stanzas are authenticated by the header MAC only (docs/envelope.md, "Appending recipients").
The relay stores head and body apart, so only the new head travels.
"""

from __future__ import annotations

from collections.abc import Sequence

from relay_client.envelope.format import Head, decode_head
from relay_client.envelope.keys import DeviceKeys, Recipient
from relay_client.envelope.schedule import KeyWrap, header_mac, hpke_wrap
from relay_client.envelope.seal import check_recipients, wrap_stanza
from relay_client.envelope.unlock import unlock


def append_recipients(head: bytes, device: DeviceKeys, recipients: Sequence[Recipient], *,
                      wrap: KeyWrap = hpke_wrap) -> bytes:
    """The envelope's new head with a stanza for each of ``recipients`` after the existing ones.

    ``head`` is the envelope's head (``format.split_envelope`` cuts it from a whole envelope);
    ``device`` must be able to open it. Raises an EnvelopeError if it cannot, ValueError if a
    recipient is already addressed or the stanza limit would be passed."""
    parsed = decode_head(head)
    unlocked = unlock(parsed, device)
    check_recipients(recipients, [stanza.recipient_device_id for stanza in parsed.stanzas])
    added = tuple(wrap_stanza(unlocked.content_key, parsed.header, recipient, wrap) for recipient in recipients)
    stanzas = parsed.stanzas + added
    mac = header_mac(unlocked.keys.header_mac_key, Head(parsed.header, stanzas, b"").mac_input())
    return Head(parsed.header, stanzas, mac).encode()

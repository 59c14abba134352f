"""Recovering an envelope's content key from its head with one device's private key, and
checking the head with it: the step opening and appending share."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from relay_client.envelope.errors import HeaderTampered, NotARecipient, UnwrapFailed
from relay_client.envelope.format import Head
from relay_client.envelope.keys import DeviceKeys
from relay_client.envelope.schedule import ContentKeys, derive, header_mac, hpke_unwrap, wrap_info


@dataclass(frozen=True)
class Unlocked:
    """A head this device opened: the content key, what derives from it, and which stanza was ours."""

    content_key: bytes
    keys: ContentKeys
    stanza_index: int
    key_id: str


def unlock(head: Head, device: DeviceKeys) -> Unlocked:
    """Unwrap the content key from ``device``'s stanza, then check the key commitment and the
    header MAC. Raises NotARecipient, UnwrapFailed or HeaderTampered."""
    found = head.stanza_for(device.device_id)
    if found is None:
        raise NotARecipient("no stanza in this envelope addresses this device")
    index, stanza = found
    private_key = device.private_keys.get(stanza.key_id)
    if private_key is None:
        raise NotARecipient(f"this device holds no private key with id {stanza.key_id!r}")
    info = wrap_info(head.header.digest, device.device_id, stanza.key_id)
    try:
        content_key = hpke_unwrap(stanza.enc + stanza.wrapped_key, private_key, info)
    except (InvalidTag, ValueError):
        raise UnwrapFailed("the stanza for this device does not open with its key") from None
    keys = derive(content_key, head.header.envelope_id)
    if not hmac.compare_digest(keys.commitment, head.header.commitment):
        raise HeaderTampered("the content key does not match the header's commitment")
    if not hmac.compare_digest(header_mac(keys.header_mac_key, head.mac_input()), head.mac):
        raise HeaderTampered("the header MAC does not verify")
    return Unlocked(content_key, keys, index, stanza.key_id)

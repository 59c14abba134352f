"""Adding recipients to a sealed envelope (forwarding to the EMR adapter or a consultant)
without touching its body, and who cannot."""

from __future__ import annotations

import os

import pytest

from relay.keys.routing_view import read_routing_view
from relay_client.envelope import (
    HeaderTampered,
    Manifest,
    NotARecipient,
    Recipient,
    append_recipients,
    open_bytes,
    seal,
    seal_bytes,
    split_envelope,
)
from relay_client.envelope.format import MAX_STANZAS, Head, decode_head
from relay_client.envelope.keys import DeviceKeyring
from relay_client.envelope.schedule import derive, header_mac, hpke_wrap
from relay_client.envelope.seal import wrap_stanza
from relay_client.envelope.streams import iterate_bytes

PHOTO = Manifest("image/jpeg")


def device() -> DeviceKeyring:
    return DeviceKeyring.generate(os.urandom(16).hex())


def to(keyring: DeviceKeyring) -> Recipient:
    return Recipient(keyring.device_id, keyring.encryption_key_id, keyring.encryption_key.public_key())


async def test_a_recipient_forwards_to_the_emr_adapter_without_resealing_the_body() -> None:
    clinician, colleague, emr, consultant = device(), device(), device(), device()
    photo = os.urandom(200_000)
    sealed = seal(PHOTO, iterate_bytes(photo), len(photo), sender=clinician.sender, recipients=[to(colleague)])
    body = b"".join([piece async for piece in sealed.body()])

    forwarded = append_recipients(sealed.head, colleague.opening_keys(), [to(emr)])
    forwarded = append_recipients(forwarded, emr.opening_keys(), [to(consultant)])

    for reader, addressed_by_sender in ((colleague, True), (emr, False), (consultant, False)):
        message = await open_bytes(forwarded + body, reader.opening_keys(), clinician.identity_key)
        assert message.content == photo
        assert message.sender_device_id == clinician.device_id
        assert message.addressed_by_sender is addressed_by_sender
    view = read_routing_view(forwarded)
    assert [r.device_id for r in view.recipients] == [colleague.device_id, emr.device_id, consultant.device_id]
    assert view.sealed_recipient_count == 1
    assert view.total_length == len(forwarded) + len(body)
    before, after = decode_head(sealed.head), decode_head(forwarded)
    assert (after.header, after.stanzas[:1]) == (before.header, before.stanzas)


async def test_the_sender_can_add_a_recipient_to_its_own_envelope() -> None:
    sender, first, later = device(), device(), device()
    envelope = await seal_bytes(PHOTO, b"x", sender=sender.sender, recipients=[to(sender), to(first)])
    head, body = split_envelope(envelope)
    grown = append_recipients(head, sender.opening_keys(), [to(later)])
    assert (await open_bytes(grown + body, later.opening_keys(), sender.identity_key)).content == b"x"


async def test_a_recipient_removed_before_sealing_cannot_open_nor_add_itself() -> None:
    sender, stays = device(), device()
    removed = device()
    await seal_bytes(PHOTO, b"before", sender=sender.sender, recipients=[to(stays), to(removed)])
    after = await seal_bytes(PHOTO, b"after removal", sender=sender.sender, recipients=[to(stays)])

    with pytest.raises(NotARecipient):
        await open_bytes(after, removed.opening_keys(), sender.identity_key)
    head, _ = split_envelope(after)
    with pytest.raises(NotARecipient):
        append_recipients(head, removed.opening_keys(), [to(removed)])


async def test_a_relay_without_the_content_key_cannot_add_a_stanza() -> None:
    sender, reader, relay_device = device(), device(), device()
    envelope = await seal_bytes(PHOTO, b"x", sender=sender.sender, recipients=[to(reader)])
    head_bytes, body = split_envelope(envelope)
    head = decode_head(head_bytes)
    guessed_key = os.urandom(32)
    stanzas = (*head.stanzas, wrap_stanza(guessed_key, head.header, to(relay_device), hpke_wrap))
    mac = header_mac(derive(guessed_key, head.header.envelope_id).header_mac_key,
                     Head(head.header, stanzas, b"").mac_input())
    forged = Head(head.header, stanzas, mac).encode() + body
    with pytest.raises(HeaderTampered):
        await open_bytes(forged, reader.opening_keys(), sender.identity_key)
    with pytest.raises(HeaderTampered):
        await open_bytes(forged, relay_device.opening_keys(), sender.identity_key)


async def test_an_altered_appended_stanza_is_rejected_by_everyone() -> None:
    sender, reader, emr = device(), device(), device()
    envelope = await seal_bytes(PHOTO, b"x", sender=sender.sender, recipients=[to(reader)])
    head, body = split_envelope(envelope)
    grown = bytearray(append_recipients(head, reader.opening_keys(), [to(emr)]))
    grown[-40] ^= 1
    with pytest.raises(HeaderTampered):
        await open_bytes(bytes(grown) + body, reader.opening_keys(), sender.identity_key)


async def test_appending_an_existing_recipient_or_past_the_limit_is_refused() -> None:
    sender, reader = device(), device()
    envelope = await seal_bytes(PHOTO, b"x", sender=sender.sender, recipients=[to(reader)])
    head, _ = split_envelope(envelope)
    with pytest.raises(ValueError):
        append_recipients(head, reader.opening_keys(), [to(reader)])
    with pytest.raises(ValueError):
        append_recipients(head, reader.opening_keys(), [])
    crowd = [to(reader)] + [
        Recipient(os.urandom(16).hex(), "k", reader.encryption_key.public_key()) for _ in range(MAX_STANZAS - 1)
    ]
    full = await seal_bytes(PHOTO, b"x", sender=sender.sender, recipients=crowd)
    with pytest.raises(ValueError):
        append_recipients(split_envelope(full)[0], reader.opening_keys(), [to(device())])

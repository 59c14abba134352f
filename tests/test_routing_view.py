"""The relay's routing view: what it reads from an envelope's head without any key, that it
agrees with the client's parser, and that bad bytes get a 422 with a stable code."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.errors import InvalidRequest
from relay.keys.routing_view import (
    MAX_HEAD_LENGTH,
    MalformedEnvelope,
    UnsupportedEnvelopeVersion,
    read_routing_view,
)
from relay_client.envelope import EnvelopeError, Manifest, Recipient, seal_bytes
from relay_client.envelope import format as client_format
from relay_client.envelope.format import decode_head, head_length
from relay_client.envelope.keys import DeviceKeyring

SENDER = DeviceKeyring.generate("c" * 32)
KEY_IDS = st.text(alphabet="ABCXYZabcxyz0189_-", min_size=1, max_size=64)


def envelope_for(recipients: list[tuple[str, str]], content: bytes, chunk_size: int) -> bytes:
    public_key = SENDER.encryption_key.public_key()
    return asyncio.run(seal_bytes(
        Manifest("image/png"), content, sender=SENDER.sender, chunk_size=chunk_size,
        recipients=[Recipient(device_id, key_id, public_key) for device_id, key_id in recipients],
    ))


def client_view(data: bytes) -> tuple | None:
    try:
        head = decode_head(data[: head_length(data)])
    except EnvelopeError:
        return None
    header = head.header
    return (header.envelope_id, header.sender_device_id, header.chunk_size, header.plaintext_length,
            tuple((s.recipient_device_id, s.key_id) for s in head.stanzas), header.sealed_stanza_count,
            head.length, head.length + header.body_length)


def server_view(data: bytes) -> tuple | None:
    try:
        view = read_routing_view(data)
    except InvalidRequest:
        return None
    return (view.envelope_id, view.sender_device_id, view.chunk_size, view.plaintext_length,
            tuple((r.device_id, r.key_id) for r in view.recipients), view.sealed_recipient_count,
            view.head_length, view.total_length)


def test_the_relay_reads_ids_key_ids_and_sizes_without_a_key() -> None:
    reader, emr = os.urandom(16).hex(), os.urandom(16).hex()
    content = os.urandom(100_000)
    envelope = envelope_for([(reader, "enc-1"), (emr, "otk-7")], content, 32 * 1024)
    view = read_routing_view(envelope)
    assert view.sender_device_id == SENDER.device_id
    assert [(r.device_id, r.key_id) for r in view.recipients] == [(reader, "enc-1"), (emr, "otk-7")]
    assert view.total_length == len(envelope)
    assert view.chunk_count == 4 and view.chunk_size == 32 * 1024
    assert view.plaintext_length == len(Manifest("image/png").frame()) + len(content)
    assert read_routing_view(envelope[: view.head_length]) == view


def test_the_layout_constants_match_the_clients() -> None:
    from relay.keys import routing_view

    for name in ("MAGIC", "VERSION", "MIN_CHUNK_SIZE", "MAX_CHUNK_SIZE", "MAX_PLAINTEXT_LENGTH", "MAX_STANZAS",
                 "MAX_KEY_ID_LENGTH", "MAX_HEAD_LENGTH", "TAG_LENGTH", "SIGNATURE_LENGTH", "MAC_LENGTH"):
        assert getattr(routing_view, name) == getattr(client_format, name), name
    assert routing_view.FIXED_HEADER.format == client_format.FIXED_HEADER.format


@pytest.mark.parametrize("data, error", [
    (b"", MalformedEnvelope),
    (b"GIF89a" + bytes(200), MalformedEnvelope),
    (b"RLYE\x02" + bytes(200), UnsupportedEnvelopeVersion),
    (b"RLYE\x01" + bytes(20), MalformedEnvelope),
])
def test_bad_bytes_get_a_typed_422(data: bytes, error: type[InvalidRequest]) -> None:
    with pytest.raises(error) as raised:
        read_routing_view(data)
    assert raised.value.status == 422
    assert raised.value.code in ("malformed_envelope", "unsupported_envelope_version")


def test_a_head_cut_short_is_malformed() -> None:
    envelope = envelope_for([(os.urandom(16).hex(), "k")], b"x", 16384)
    head = read_routing_view(envelope).head_length
    for length in range(head):
        with pytest.raises(InvalidRequest):
            read_routing_view(envelope[:length])
    assert head < MAX_HEAD_LENGTH


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    recipients=st.lists(st.tuples(st.binary(min_size=16, max_size=16).map(bytes.hex), KEY_IDS), min_size=1,
                        max_size=6, unique_by=lambda pair: pair[0]),
    size=st.integers(0, 70_000),
    chunk_size=st.sampled_from([16384, 20000, 65536]),
)
def test_server_and_client_agree_on_random_envelopes(recipients: list, size: int, chunk_size: int) -> None:
    envelope = envelope_for(recipients, os.urandom(size), chunk_size)
    view = server_view(envelope)
    assert view is not None and view == client_view(envelope)
    assert view[4] == tuple(recipients) and view[-1] == len(envelope)


VALID = envelope_for([(os.urandom(16).hex(), "one"), (os.urandom(16).hex(), "two")], b"hello", 16384)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_server_and_client_agree_on_mutated_heads(data: st.DataObject) -> None:
    head = bytearray(VALID[: read_routing_view(VALID).head_length])
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(head) - 1))
        head[position] = data.draw(st.integers(0, 255))
    mutated = bytes(head) + VALID[len(head) :]
    assert server_view(mutated) == client_view(mutated)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1024) | st.binary(max_size=1024).map(lambda tail: b"RLYE\x01" + tail))
def test_arbitrary_bytes_raise_only_invalid_request(data: bytes) -> None:
    assert server_view(data) == client_view(data)

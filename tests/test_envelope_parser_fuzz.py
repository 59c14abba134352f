"""Property-based tests: whatever bytes arrive, parsing and opening end in an envelope or in
the typed EnvelopeError, never in anything else."""

from __future__ import annotations

import asyncio
import os

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from relay_client.envelope import EnvelopeError, Manifest, Recipient, open_bytes, seal_bytes, split_envelope
from relay_client.envelope.format import MAGIC, VERSION, decode_head
from relay_client.envelope.keys import DeviceKeyring
from relay_client.envelope.manifest import canonical_json

SENDER = DeviceKeyring.generate("a" * 32)
READER = DeviceKeyring.generate("b" * 32)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sealed(content: bytes, chunk_size: int = 16384) -> bytes:
    recipient = Recipient(READER.device_id, READER.encryption_key_id, READER.encryption_key.public_key())
    return asyncio.run(seal_bytes(Manifest("text/plain"), content, sender=SENDER.sender, recipients=[recipient],
                                  chunk_size=chunk_size))


VALID = sealed(os.urandom(40_000))
PREAMBLE = MAGIC + bytes([VERSION])


def outcome_of(data: bytes) -> str:
    """Try every parser on ``data``; each either succeeds or raises an EnvelopeError."""
    for parse in (split_envelope, decode_head):
        try:
            parse(data)
        except EnvelopeError:
            pass
    try:
        asyncio.run(open_bytes(data, READER.opening_keys(), SENDER.identity_key))
    except EnvelopeError as error:
        return type(error).__name__
    return "opened"


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_envelope_errors(data: bytes) -> None:
    assert outcome_of(data) != "opened"


@FUZZ
@given(st.binary(max_size=4096))
def test_bytes_behind_a_valid_preamble_raise_only_envelope_errors(data: bytes) -> None:
    assert outcome_of(PREAMBLE + data) != "opened"


@FUZZ
@given(st.data())
def test_a_mutated_envelope_raises_only_envelope_errors(data: st.DataObject) -> None:
    envelope = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(envelope) - 1))
        action = data.draw(st.sampled_from(["xor", "insert", "delete", "cut"]))
        if action == "xor":
            envelope[position] ^= data.draw(st.integers(1, 255))
        elif action == "insert":
            envelope[position:position] = data.draw(st.binary(min_size=1, max_size=64))
        elif action == "delete":
            del envelope[position : position + data.draw(st.integers(1, 64))]
        else:
            del envelope[position:]
        if not envelope:
            break
    assume(envelope != VALID)
    assert outcome_of(bytes(envelope)) != "opened"


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_manifest_bytes_raise_only_envelope_errors(data: bytes) -> None:
    try:
        Manifest.decode(data)
    except EnvelopeError:
        pass


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(["v", "content_type", "clinical", "extra"]) | st.text(max_size=6), JSON,
                       max_size=5))
def test_arbitrary_json_manifests_decode_or_raise_envelope_errors(document: dict) -> None:
    try:
        data = canonical_json(document)
    except ValueError:
        return
    try:
        manifest = Manifest.decode(data)
    except EnvelopeError:
        return
    assert Manifest.decode(manifest.encode()) == manifest

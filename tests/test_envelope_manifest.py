"""The manifest inside every envelope: canonical bytes both implementations agree on, its
schema and limits, and what readers refuse."""

from __future__ import annotations

import pytest

from relay_client.envelope import ClinicalMetadata, MalformedManifest, Manifest, UnsupportedVersion
from relay_client.envelope.manifest import MAX_MANIFEST_LENGTH, parse_frame_length

FULL = Manifest("image/jpeg", ClinicalMetadata(
    patient_ref="Patient/ü-1", encounter_ref="Encounter/2", body_site="forearm", laterality="bilateral",
    captured_at="2025-01-31T14:05:00.123Z", captured_by="user-1", consent_ref="Consent/3",
))


def test_a_manifest_encodes_canonically_and_decodes_to_itself() -> None:
    encoded = FULL.encode()
    assert encoded.startswith(b'{"clinical":{"body_site":"forearm","captured_at"')
    assert b" " not in encoded.replace(b"Patient/\xc3\xbc-1", b"")
    assert Manifest.decode(encoded) == FULL
    assert Manifest.decode(Manifest("text/plain").encode()) == Manifest("text/plain")
    assert FULL.frame()[:4] == len(encoded).to_bytes(4, "big")


@pytest.mark.parametrize("data", [
    b'{"v": 1, "content_type": "text/plain"}',
    b'{"v":1,"content_type":"text/plain","content_type":"text/plain"}',
    b'{"content_type":"text/plain","v":1.0}',
    b'{"content_type":"text/plain","v":1,"x":1e3}',
    b'{"content_type":"text/plain","v":1,"x":9007199254740993}',
    b'{"Content":1,"content_type":"text/plain","v":1}',
    b'{"content_type":"text/plain","v":1,"x":"\\ud800"}',
    b'{"content_type":"Text/Plain","v":1}',
    b'{"clinical":{"laterality":"up"},"content_type":"text/plain","v":1}',
    b'{"clinical":{"captured_at":"2025-02-30T00:00:00Z"},"content_type":"text/plain","v":1}',
    b'{"clinical":"x","content_type":"text/plain","v":1}',
    b'{"content_type":"text/plain"}',
    b'["v",1]',
    b"\xff",
    b"[" * 100_000,
])
def test_non_canonical_or_invalid_manifests_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedManifest):
        Manifest.decode(data)


def test_unknown_fields_are_ignored_and_other_versions_refused() -> None:
    later = b'{"clinical":{"wound_stage":2},"content_type":"image/png","thumbnail":"x","v":1}'
    assert Manifest.decode(later) == Manifest("image/png", ClinicalMetadata())
    with pytest.raises(UnsupportedVersion):
        Manifest.decode(b'{"content_type":"image/png","v":2}')


def test_the_limits_are_enforced_when_building() -> None:
    with pytest.raises(ValueError):
        ClinicalMetadata(body_site="x" * 257)
    with pytest.raises(ValueError):
        ClinicalMetadata(captured_at="2025-01-31 14:05")
    with pytest.raises(ValueError):
        Manifest("not a media type")
    assert len(Manifest("image/jpeg", ClinicalMetadata(*(["x" * 256] * 3))).encode()) < MAX_MANIFEST_LENGTH


@pytest.mark.parametrize("length, plaintext_length", [(MAX_MANIFEST_LENGTH + 1, 10**6), (1, 100), (97, 100), (2, 3)])
def test_a_manifest_frame_out_of_bounds_is_refused(length: int, plaintext_length: int) -> None:
    with pytest.raises(MalformedManifest):
        parse_frame_length(length.to_bytes(4, "big"), plaintext_length)
    assert parse_frame_length((96).to_bytes(4, "big"), 100) == 96

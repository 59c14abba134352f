"""The test vectors in docs/envelope.md: regenerated here from their fixed inputs and compared
with the document byte for byte, so a browser implementation can be checked against them.

The only randomness in sealing is the content key, envelope id and nonce prefix (fixed through
``EnvelopeSecrets``) and HPKE's ephemeral key, which ``cryptography`` draws internally. For the
vectors, ``fixed_ephemeral_wrap`` performs RFC 9180 base-mode SetupBaseS + Seal with a given
ephemeral key, composed from ``cryptography``'s X25519, HKDF and AES-GCM; opening the result
with ``cryptography``'s own HPKE proves it is standard HPKE.

Print the blocks for the document with: .venv/bin/python -m tests.test_envelope_vectors
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from relay_client.envelope import (
    ClinicalMetadata,
    DeviceKeys,
    EnvelopeSecrets,
    Manifest,
    Recipient,
    SenderIdentity,
    open_bytes,
    seal_bytes,
    split_envelope,
)
from relay_client.envelope.format import TAG_LENGTH, decode_head
from relay_client.envelope.keys import raw_public
from relay_client.envelope.schedule import (
    KeyWrap,
    PayloadDigest,
    chunk_nonce,
    derive,
    signature_message,
    wrap_info,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "envelope.md"
KEM_SUITE = b"KEM\x00\x20"
HPKE_SUITE = b"HPKE\x00\x20\x00\x01\x00\x02"

SENDER_DEVICE = "11" * 16
RECIPIENT_DEVICE = "22" * 16
KEY_ID = "enc-1"
IDENTITY_SEED = bytes(range(0, 32))
RECIPIENT_KEY = bytes(range(32, 64))
EPHEMERAL_KEY = bytes(range(64, 96))
SECRETS = EnvelopeSecrets(bytes(range(96, 128)), "00112233445566778899aabbccddeeff", bytes.fromhex("a0a1a2a3a4a5a6"))
MANIFEST = Manifest("text/plain; charset=utf-8", ClinicalMetadata(
    patient_ref="Patient/example", body_site="left forearm", laterality="left", captured_at="2025-01-31T14:05:00Z"))
CHUNK_SIZE = 16384
CONTENTS = {"small": b"Hello from Relay.", "three-chunk": bytes(i % 251 for i in range(40_000))}


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, b"HPKE-v1" + suite + label + ikm, hashlib.sha256).digest()


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)


def fixed_ephemeral_wrap(ephemeral: X25519PrivateKey) -> KeyWrap:
    """RFC 9180 §4.1 Encap and §5.1 KeySchedule (mode_base), then Seal with seq 0 and empty AAD."""

    def wrap(plaintext: bytes, public_key: X25519PublicKey, info: bytes) -> bytes:
        enc, recipient = raw_public(ephemeral.public_key()), raw_public(public_key)
        eae_prk = _labeled_extract(KEM_SUITE, b"", b"eae_prk", ephemeral.exchange(public_key))
        shared_secret = _labeled_expand(KEM_SUITE, eae_prk, b"shared_secret", enc + recipient, 32)
        context = (b"\x00" + _labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"")
                   + _labeled_extract(HPKE_SUITE, b"", b"info_hash", info))
        secret = _labeled_extract(HPKE_SUITE, shared_secret, b"secret", b"")
        key = _labeled_expand(HPKE_SUITE, secret, b"key", context, 32)
        base_nonce = _labeled_expand(HPKE_SUITE, secret, b"base_nonce", context, 12)
        return enc + AESGCM(key).encrypt(base_nonce, plaintext, b"")

    return wrap


def _hex_lines(data: bytes) -> list[str]:
    return [data[start : start + 32].hex() for start in range(0, len(data), 32)] or [""]


def seal_vector(name: str) -> bytes:
    """Vector ``name``'s envelope, sealed from its fixed inputs."""
    identity = Ed25519PrivateKey.from_private_bytes(IDENTITY_SEED)
    recipient_key = X25519PrivateKey.from_private_bytes(RECIPIENT_KEY)
    return asyncio.run(seal_bytes(
        MANIFEST, CONTENTS[name], sender=SenderIdentity(SENDER_DEVICE, identity), chunk_size=CHUNK_SIZE,
        recipients=[Recipient(RECIPIENT_DEVICE, KEY_ID, recipient_key.public_key())], secrets=SECRETS,
        wrap=fixed_ephemeral_wrap(X25519PrivateKey.from_private_bytes(EPHEMERAL_KEY)),
    ))


def vector(name: str) -> str:
    """The text block docs/envelope.md holds for vector ``name``."""
    identity = Ed25519PrivateKey.from_private_bytes(IDENTITY_SEED)
    recipient_key = X25519PrivateKey.from_private_bytes(RECIPIENT_KEY)
    content = CONTENTS[name]
    envelope = seal_vector(name)
    head_bytes, body = split_envelope(envelope)
    head = decode_head(head_bytes)
    header, keys = head.header, derive(SECRETS.content_key, SECRETS.envelope_id)
    digest = PayloadDigest(header.digest)
    fields: list[tuple[str, bytes | str | int]] = []
    if name == "small":
        fields += [
            ("sender_device_id", SENDER_DEVICE), ("recipient_device_id", RECIPIENT_DEVICE),
            ("recipient_key_id", KEY_ID), ("sender_identity_seed", IDENTITY_SEED),
            ("sender_identity_public", raw_public(identity.public_key())),
            ("recipient_private_key", RECIPIENT_KEY), ("recipient_public_key", raw_public(recipient_key.public_key())),
            ("hpke_ephemeral_private_key", EPHEMERAL_KEY), ("content_key", SECRETS.content_key),
            ("envelope_id", SECRETS.envelope_id), ("nonce_prefix", SECRETS.nonce_prefix),
            ("chunk_size", CHUNK_SIZE), ("manifest_json", MANIFEST.encode()), ("content", content),
            ("payload_key", keys.payload_key), ("header_mac_key", keys.header_mac_key),
            ("key_commitment", keys.commitment), ("fixed_header", header.encode()),
            ("header_digest", header.digest),
            ("hpke_info", wrap_info(header.digest, RECIPIENT_DEVICE, KEY_ID)),
            ("hpke_enc", head.stanzas[0].enc), ("hpke_ciphertext", head.stanzas[0].wrapped_key),
            ("header_mac", head.mac), ("sealed_stanzas_digest", head.sealed_stanzas_digest()),
        ]
    else:
        fields += [("content", "bytes i % 251 for i in 0..39999"), ("head", head_bytes)]
    position = 0
    for index in range(header.chunk_count):
        chunk = body[position : position + header.chunk_length(index) + TAG_LENGTH]
        position += len(chunk)
        digest.update(chunk)
        fields += [(f"chunk_{index}_nonce", chunk_nonce(header.nonce_prefix, index, index == header.chunk_count - 1)),
                   (f"chunk_{index}_sha256", hashlib.sha256(chunk).digest()),
                   (f"digest_chain_{index + 1}", digest.value)]
    fields += [
        ("signature_message", signature_message(header.digest, head.sealed_stanzas_digest(), digest.value)),
        ("signature", body[-64:]),
        ("envelope_length", len(envelope)),
        ("envelope_sha256", hashlib.sha256(envelope).digest()),
    ]
    if name == "small":
        fields.append(("envelope", envelope))
    lines = [f"# vector {name}"]
    for key, value in fields:
        if isinstance(value, bytes) and len(value) > 32:
            lines.append(f"{key}:")
            lines += [f"  {line}" for line in _hex_lines(value)]
        else:
            lines.append(f"{key}: {value.hex() if isinstance(value, bytes) else value}")
    return "\n".join(lines)


def documented(name: str) -> str:
    match = re.search(rf"```text\n(# vector {re.escape(name)}\n.*?)\n```", DOC.read_text(), re.DOTALL)
    assert match, f"docs/envelope.md has no block for vector {name}"
    return match.group(1)


def test_the_documented_vectors_are_what_the_implementation_produces() -> None:
    for name in CONTENTS:
        assert documented(name) == vector(name), f"vector {name} changed: regenerate with python -m {__name__}"


def documented_value(name: str, key: str) -> str:
    """A field of a documented vector; a multi-line hex field is joined."""
    lines = documented(name).splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"{key}:"))
    inline = lines[start].split(":", 1)[1].strip()
    following = [line.strip() for line in lines[start + 1 :]]
    continued = following[: next((i for i, line in enumerate(following) if ":" in line), len(following))]
    return inline or "".join(continued)


async def test_the_documented_envelopes_open_with_standard_hpke() -> None:
    device = DeviceKeys(RECIPIENT_DEVICE, {KEY_ID: X25519PrivateKey.from_private_bytes(RECIPIENT_KEY)})
    sender_key = Ed25519PrivateKey.from_private_bytes(IDENTITY_SEED).public_key()
    small = bytes.fromhex(documented_value("small", "envelope"))
    assert (await open_bytes(small, device, sender_key)).content == CONTENTS["small"]
    for name, content in CONTENTS.items():
        envelope = await asyncio.to_thread(seal_vector, name)
        assert hashlib.sha256(envelope).hexdigest() == documented_value(name, "envelope_sha256")
        message = await open_bytes(envelope, device, sender_key)
        assert (message.content, message.manifest) == (content, MANIFEST)


if __name__ == "__main__":
    for vector_name in CONTENTS:
        print(f"```text\n{vector(vector_name)}\n```\n")

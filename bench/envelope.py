"""Seal and open throughput of the v1 envelope against raw AES-256-GCM, measured in one run.

    .venv/bin/python bench/envelope.py [--sizes 4,256] [--repeat 3]

The raw baseline is ``cryptography``'s AESGCM over the same bytes, cut into the same chunks,
with the same nonces and AAD, and nothing else. The envelope also hashes every chunk for the
sender's signature (docs/envelope.md, "Payload digest"), so a third row shows that irreducible
floor: the same AES-GCM calls plus SHA-256 of each chunk, without any envelope code.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from relay_client.envelope import (
    DEFAULT_CHUNK_SIZE,
    DeviceKeys,
    Manifest,
    Recipient,
    SealedEnvelope,
    SenderIdentity,
    read_envelope,
    seal,
)
from relay_client.envelope.streams import iterate_bytes

MIB = 1024 * 1024
AAD = bytes(32)
PREFIX = bytes(7)


def chunk_views(data: bytes, chunk_size: int) -> list[memoryview]:
    view = memoryview(data)
    return [view[start : start + chunk_size] for start in range(0, len(data), chunk_size)] or [view]


def nonce(index: int, last: bool) -> bytes:
    return PREFIX + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def raw_seal(aead: AESGCM, chunks: Sequence[memoryview], *, digest: bool) -> None:
    last = len(chunks) - 1
    for index, chunk in enumerate(chunks):
        sealed = aead.encrypt(nonce(index, index == last), chunk, AAD)
        if digest:
            hashlib.sha256(hashlib.sha256(sealed).digest()).digest()


def raw_open(aead: AESGCM, sealed: Sequence[bytes], *, digest: bool) -> None:
    last = len(sealed) - 1
    for index, chunk in enumerate(sealed):
        if digest:
            hashlib.sha256(hashlib.sha256(chunk).digest()).digest()
        aead.decrypt(nonce(index, index == last), chunk, AAD)


async def pieces(items: Sequence[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def best_of(repeat: int, run: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await run()
        times.append(time.perf_counter() - start)
    return min(times)


async def measure(size: int, repeat: int, chunk_size: int) -> dict[str, float]:
    """Seconds per operation. Every run reads the same bytes and discards its output, so no
    figure pays for keeping hundreds of MiB alive; all runs share one event loop."""
    data = os.urandom(size)
    chunks = chunk_views(data, chunk_size)
    aead = AESGCM(AESGCM.generate_key(256))
    identity = Ed25519PrivateKey.generate()
    sender = SenderIdentity(os.urandom(16).hex(), identity)
    private_key = X25519PrivateKey.generate()
    device = DeviceKeys(os.urandom(16).hex(), {"bench": private_key})
    recipient = Recipient(device.device_id, "bench", private_key.public_key())
    manifest = Manifest("application/octet-stream")
    last = len(chunks) - 1
    raw = [aead.encrypt(nonce(index, index == last), chunk, AAD) for index, chunk in enumerate(chunks)]

    def sealed() -> SealedEnvelope:
        return seal(manifest, iterate_bytes(data), size, sender=sender, recipients=[recipient], chunk_size=chunk_size)

    envelope = [piece async for piece in sealed()]

    async def envelope_seal() -> None:
        async for _ in sealed():
            pass

    async def envelope_open() -> None:
        opened = await (await read_envelope(pieces(envelope))).unlock(device, identity.public_key())
        async for _ in opened.content():
            pass
        assert opened.authentic

    async def synchronous(function: Callable[[], None]) -> None:
        function()

    return {
        "raw seal": await best_of(repeat, lambda: synchronous(lambda: raw_seal(aead, chunks, digest=False))),
        "raw open": await best_of(repeat, lambda: synchronous(lambda: raw_open(aead, raw, digest=False))),
        "floor seal": await best_of(repeat, lambda: synchronous(lambda: raw_seal(aead, chunks, digest=True))),
        "floor open": await best_of(repeat, lambda: synchronous(lambda: raw_open(aead, raw, digest=True))),
        "envelope seal": await best_of(repeat, envelope_seal),
        "envelope open": await best_of(repeat, envelope_open),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4,256", help="payload sizes in MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is kept")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    args = parser.parse_args()
    print(f"chunk size {args.chunk_size} bytes, best of {args.repeat}; MiB/s and ratio to raw AES-256-GCM")
    print(f"{'size':>8} {'op':>5} {'raw AEAD':>10} {'AEAD+SHA256':>12} {'envelope':>10} {'ratio':>7} {'of floor':>9}")
    for mib in (int(text) for text in args.sizes.split(",")):
        times = asyncio.run(measure(mib * MIB, args.repeat, args.chunk_size))
        for op in ("seal", "open"):
            raw, floor, envelope = (mib / times[f"{kind} {op}"] for kind in ("raw", "floor", "envelope"))
            print(f"{mib:>5} MiB {op:>5} {raw:>10.0f} {floor:>12.0f} {envelope:>10.0f} "
                  f"{envelope / raw:>6.2f}x {envelope / floor:>8.2f}x")


if __name__ == "__main__":
    main()

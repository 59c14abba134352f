"""1 GiB sealed and opened as one stream in a fresh interpreter, whose peak resident memory
(ru_maxrss) must stay within a few chunks of where it started: sealing and opening run in
constant memory. Takes a few seconds; bounded by a timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import time

GIB = 1024 * 1024 * 1024
PEAK_GROWTH_LIMIT = 32 * 1024 * 1024
TIME_LIMIT = 60

STREAM_ONE_GIB = """
import asyncio, json, os, resource, sys, zlib
from relay_client.envelope import Manifest, Recipient, read_envelope, seal
from relay_client.envelope.keys import DeviceKeyring

TOTAL = int(sys.argv[1])
BLOCK = os.urandom(1024 * 1024)
sender, reader = DeviceKeyring.generate("1" * 32), DeviceKeyring.generate("2" * 32)
recipient = Recipient(reader.device_id, reader.encryption_key_id, reader.encryption_key.public_key())

def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

async def content(total):
    sent = 0
    while sent < total:
        piece = BLOCK[: min(len(BLOCK), total - sent)]
        sent += len(piece)
        yield piece

async def stream(total):
    sealed = seal(Manifest("video/mp4"), content(total), total, sender=sender.sender, recipients=[recipient])
    opened = await (await read_envelope(sealed)).unlock(reader.opening_keys(), sender.identity_key)
    received, checksum = 0, 0
    async for piece in opened.content():
        received += len(piece)
        checksum = zlib.crc32(piece, checksum)
    return received, checksum, opened.authentic, sealed.length

asyncio.run(stream(8 * 1024 * 1024))
before = peak()
received, checksum, authentic, length = asyncio.run(stream(TOTAL))
expected = 0
for _ in range(TOTAL // len(BLOCK)):
    expected = zlib.crc32(BLOCK, expected)
print(json.dumps({"before": before, "after": peak(), "received": received, "authentic": authentic,
                  "intact": checksum == expected, "length": length}))
"""


def test_one_gib_streams_through_seal_and_open_in_constant_memory() -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", STREAM_ONE_GIB, str(GIB)], capture_output=True, text=True,
                            timeout=TIME_LIMIT, check=True)
    elapsed = time.monotonic() - started
    report = json.loads(result.stdout)
    assert report["received"] == GIB and report["intact"] and report["authentic"]
    assert report["length"] > GIB
    assert report["after"] - report["before"] < PEAK_GROWTH_LIMIT, report
    assert elapsed < TIME_LIMIT

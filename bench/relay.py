"""Upload-then-download throughput of the camera relay against a bare streaming server, in one run.

    .venv/bin/python -m bench.relay [--sizes 4,32] [--rounds 8] [--big-mib 1024]

Both servers run as their own processes on 127.0.0.1. The relay is `relay serve` on its
embedded defaults (SQLite, filesystem spool); a round trip is a tus POST + one streamed PATCH,
the recipient's download, and its acknowledgement (which purges the blob). The baseline is a
bare aiohttp server that streams the same bytes to a file and back, with nothing else; it runs
a second time fsyncing each upload before answering (the "durable" columns), the floor of any
server that, like the relay's spool, acknowledges only bytes on disk. Sealing
happens before the clock starts. Finally one large envelope passes through the relay while its
peak RSS growth is read from /proc (VmHWM after resetting it through clear_refs).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from relay_client.envelope import Manifest, seal

from bench.proc import rss_now_kib, rss_peak_kib
from tests.support.devices import DeviceKeys, RegisteredDevice
from tests.support.envelopes import TUS, keyring_of, recipient_of
from tests.support.harness import PASSWORD, free_port

MiB = 1024 * 1024
PIECE = 256 * 1024
RELAY = Path(sys.executable).with_name("relay")


@dataclass
class Pair:
    """A sender device and a recipient device, each with its device-bound session."""

    sender: RegisteredDevice
    sender_token: str
    recipient: RegisteredDevice
    recipient_token: str


async def file_pieces(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while piece := await asyncio.to_thread(source.read, PIECE):
            yield piece


async def sealed_to_file(pair: Pair, size: int, directory: Path) -> tuple[Path, str]:
    """Seal ``size`` random bytes from the pair's sender to its recipient; returns (file, sha256 hex)."""
    async def content() -> AsyncIterator[bytes]:
        for offset in range(0, size, PIECE):
            yield os.urandom(min(PIECE, size - offset))

    envelope = seal(Manifest("image/jpeg"), content(), size, sender=keyring_of(pair.sender).sender,
                    recipients=[recipient_of(pair.recipient)])
    target, digest = directory / secrets.token_hex(8), hashlib.sha256()
    with target.open("wb") as sink:
        async for piece in envelope:
            digest.update(piece)
            await asyncio.to_thread(sink.write, piece)
    return target, digest.hexdigest()


async def relay_round_trip(http: aiohttp.ClientSession, url: str, pair: Pair, envelope: Path, sha256: str) -> float:
    length = envelope.stat().st_size
    started = time.perf_counter()
    meta = "sha256 " + base64.b64encode(sha256.encode()).decode()
    async with http.post(f"{url}/api/v1/uploads", headers=TUS | {
            "Authorization": f"Bearer {pair.sender_token}", "Upload-Length": str(length),
            "Upload-Metadata": meta}) as created:
        assert created.status == 201, await created.text()
        location = created.headers["Location"]
    async with http.patch(url + location, data=file_pieces(envelope), headers=TUS | {
            "Authorization": f"Bearer {pair.sender_token}", "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream", "Content-Length": str(length)}) as patched:
        assert patched.status == 204, await patched.text()
    blob_id = location.rsplit("/", 1)[1]
    auth = {"Authorization": f"Bearer {pair.recipient_token}"}
    received = 0
    async with http.get(f"{url}/api/v1/blobs/{blob_id}", headers=auth) as download:
        assert download.status == 200, await download.text()
        async for piece in download.content.iter_chunked(PIECE):
            received += len(piece)
    assert received == length
    async with http.post(f"{url}/api/v1/blobs/{blob_id}/ack", headers=auth) as acked:
        assert acked.status in (200, 204), await acked.text()
    return time.perf_counter() - started


async def bare_round_trip(http: aiohttp.ClientSession, url: str, envelope: Path, *, durable: bool = False) -> float:
    length = envelope.stat().st_size
    started = time.perf_counter()
    async with http.post(f"{url}/blobs", data=file_pieces(envelope), params={"sync": "1"} if durable else None,
                         headers={"Content-Length": str(length)}) as put:
        blob_id = await put.text()
    received = 0
    async with http.get(f"{url}/blobs/{blob_id}") as download:
        async for piece in download.content.iter_chunked(PIECE):
            received += len(piece)
    assert received == length
    async with http.delete(f"{url}/blobs/{blob_id}"):
        pass
    return time.perf_counter() - started


def bare_app(directory: Path) -> web.Application:
    """The baseline: stream a body to a file, stream it back, delete it. With ``?sync=1`` the
    file is fsynced before the upload is answered, as the relay's spool does (the durable floor)."""
    async def put(request: web.Request) -> web.Response:
        blob_id = secrets.token_hex(16)
        with (directory / blob_id).open("wb") as sink:
            async for piece in request.content.iter_chunked(PIECE):
                await asyncio.to_thread(sink.write, piece)
            if request.query.get("sync") == "1":
                await asyncio.to_thread(sink.flush)
                await asyncio.to_thread(os.fsync, sink.fileno())
        return web.Response(text=blob_id)

    async def get(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(directory / request.match_info["blob_id"], chunk_size=PIECE)

    async def delete(request: web.Request) -> web.Response:
        (directory / request.match_info["blob_id"]).unlink()
        return web.Response(status=204)

    app = web.Application(client_max_size=4 * 1024 * MiB)
    app.router.add_post("/blobs", put)
    app.router.add_get("/blobs/{blob_id}", get)
    app.router.add_delete("/blobs/{blob_id}", delete)
    return app


async def wait_for(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(url):
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


async def setup_pairs(url: str, count: int) -> list[Pair]:
    pairs = []
    async with aiohttp.ClientSession() as http:
        for index in range(count):
            login = {"tenant": "bench", "username": f"clinician{index}", "password": PASSWORD}
            async with http.post(f"{url}/api/v1/auth/login", json=login) as response:
                token = (await response.json())["token"]
            devices = []
            for name in ("camera", "phone"):
                keys = DeviceKeys()
                async with http.post(f"{url}/api/v1/devices", json=keys.registration(name),
                                     headers={"Authorization": f"Bearer {token}"}) as response:
                    assert response.status == 201, await response.text()
                    view = await response.json()
                device = RegisteredDevice(view["id"], keys, view)
                async with http.post(f"{url}/api/v1/auth/login", json=login | {"device_id": device.id}) as response:
                    devices.append((device, (await response.json())["token"]))
            pairs.append(Pair(devices[0][0], devices[0][1], devices[1][0], devices[1][1]))
    return pairs


def measure(trips: list[float], size: int, wall: float) -> tuple[float, float, float]:
    """MB/s over the wall time (both directions), p50 and p95 of the round trips in ms."""
    rate = 2 * size * len(trips) / MiB / wall
    p50 = statistics.median(trips) * 1000
    p95 = sorted(trips)[math.ceil(len(trips) * 0.95) - 1] * 1000
    return rate, p50, p95


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    relay_port, bare_port, concurrency = free_port(), free_port(), max(args.clients)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    data = work / "data"
    subprocess.run([RELAY, "--data-dir", data, "admin", "create-tenant", "bench"], env=env, check=True,
                   capture_output=True)
    for index in range(concurrency):
        subprocess.run([RELAY, "--data-dir", data, "admin", "create-user", "--tenant", "bench", "--username",
                        f"clinician{index}", "--role", "clinician", "--password-stdin"], input=PASSWORD.encode(),
                       env=env, check=True, capture_output=True)
    relay = subprocess.Popen([RELAY, "serve", "--port", str(relay_port), "--data-dir", data], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bare_dir = work / "bare"
    bare_dir.mkdir()
    bare = subprocess.Popen([sys.executable, "-m", "bench.relay", "--serve-bare", str(bare_port), str(bare_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    relay_url, bare_url = f"http://127.0.0.1:{relay_port}", f"http://127.0.0.1:{bare_port}"
    try:
        await wait_for(relay_url + "/healthz")
        await wait_for(bare_url + "/blobs/none")
        pairs = await setup_pairs(relay_url, concurrency)
        print(f"{'size':>8} {'clients':>7} {'relay MB/s':>10} {'bare MB/s':>10} {'ratio':>6} "
              f"{'relay p50/p95 ms':>17} {'bare p50/p95 ms':>16} {'durable MB/s':>12} {'ratio':>6}")
        for size_mib in args.sizes:
            size = size_mib * MiB
            for clients in args.clients:
                envelopes = [[await sealed_to_file(pairs[c], size, work) for _ in range(args.rounds)]
                             for c in range(clients)]
                timeout = aiohttp.ClientTimeout(total=None)
                async with aiohttp.ClientSession(timeout=timeout) as http:
                    async def relay_client(c: int) -> list[float]:
                        return [await relay_round_trip(http, relay_url, pairs[c], path, digest)
                                for path, digest in envelopes[c]]

                    async def bare_client(c: int, durable: bool) -> list[float]:
                        return [await bare_round_trip(http, bare_url, path, durable=durable)
                                for path, _ in envelopes[c]]

                    started = time.perf_counter()
                    bare_trips = sum(await asyncio.gather(*(bare_client(c, False) for c in range(clients))), [])
                    bare_wall = time.perf_counter() - started
                    started = time.perf_counter()
                    durable_trips = sum(await asyncio.gather(*(bare_client(c, True) for c in range(clients))), [])
                    durable_wall = time.perf_counter() - started
                    started = time.perf_counter()
                    relay_trips = sum(await asyncio.gather(*(relay_client(c) for c in range(clients))), [])
                    relay_wall = time.perf_counter() - started
                r_rate, r50, r95 = measure(relay_trips, size, relay_wall)
                b_rate, b50, b95 = measure(bare_trips, size, bare_wall)
                d_rate, _, _ = measure(durable_trips, size, durable_wall)
                print(f"{size_mib:>5} MiB {clients:>7} {r_rate:>10.0f} {b_rate:>10.0f} {r_rate / b_rate:>5.2f}x "
                      f"{r50:>8.0f}/{r95:<8.0f} {b50:>7.0f}/{b95:<8.0f} {d_rate:>12.0f} {r_rate / d_rate:>5.2f}x",
                      flush=True)
                for row in envelopes:
                    for path, _ in row:
                        path.unlink()
        big, digest = await sealed_to_file(pairs[0], args.big_mib * MiB, work)
        Path(f"/proc/{relay.pid}/clear_refs").write_text("5")
        before = rss_now_kib(relay.pid)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            seconds = await relay_round_trip(http, relay_url, pairs[0], big, digest)
        peak = rss_peak_kib(relay.pid)
        print(f"{args.big_mib} MiB through the relay in {seconds:.1f} s; relay RSS {before / 1024:.1f} MiB before, "
              f"peak {peak / 1024:.1f} MiB: growth {(peak - before) / 1024:.1f} MiB (target <= 64 MiB)")
    finally:
        for process in (relay, bare):
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[4, 32],
                        help="envelope payload sizes in MiB")
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8],
                        help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=4, help="round trips per client per figure")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the envelope for the RSS figure")
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        web.run_app(bare_app(Path(args.serve_bare[1])), host="127.0.0.1", port=int(args.serve_bare[0]),
                    print=None, access_log=None)
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

"""Sealing a photo in the browser: the v1 envelope (clients/web/src/envelope) in Debian's
Chromium against raw WebCrypto AES-256-GCM over the same bytes and chunking, in one run.

    .venv/bin/python -m bench.envelope_browser [--size-mib 5] [--repeat 30] [--chunk-size 65536]

Needs `apt-get install chromium` and `npm ci` in clients/web. The page (clients/web/test/
bench-page.js) seals a random photo-sized Blob with `sealBlob` (one recipient, HPKE wrap,
signature, output assembled into a Blob): the figure the 150 ms target is about. It also seals
the same photo from bytes in memory and discards the output, which leaves out the browser's
Blob reading and writing, and runs the raw baselines on the same plaintext (manifest frame +
photo) cut into the same chunks with the same nonces and AAD: one chunk at a time, as many in
flight as the envelope keeps, and with the SHA-256 digest chain the envelope's signature needs
(the floor). The rounds interleave all of them, so drift hits each alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from tests.support.browser import launch_chromium, open_page, serve_web

MIB = 1024 * 1024
TARGET_MS = 150.0
ROWS = {
    "envelope": "envelope seal, Blob to Blob (sealBlob)",
    "envelopeInMemory": "envelope seal, bytes in, output discarded",
    "rawSequential": "raw AES-256-GCM, one chunk at a time",
    "rawPipelined": "raw AES-256-GCM, pipelined like the envelope",
    "floor": "raw AES-256-GCM + SHA-256 chain, pipelined",
}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(size: int, chunk_size: int, repeat: int, warmup: int) -> dict[str, Any]:
    async with (serve_web() as site, launch_chromium() as browser,
                open_page(browser, site.url + "/test/bench.html", ready="envelopeBench") as page):
        result = await page.evaluate("options => window.envelopeBench.run(options)", {
            "size": size, "chunkSize": chunk_size, "repeat": repeat, "warmup": warmup})
        assert isinstance(result, dict)
        result["browser"] = browser.version
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=float, default=5.0, help="photo size in MiB")
    parser.add_argument("--chunk-size", type=int, default=64 * 1024)
    parser.add_argument("--repeat", type=int, default=30, help="measured rounds")
    parser.add_argument("--warmup", type=int, default=3, help="rounds run first and not counted")
    args = parser.parse_args()
    size = int(args.size_mib * MIB)
    result = asyncio.run(measure(size, args.chunk_size, args.repeat, args.warmup))
    times = result["times"]
    print(f"Chromium {result['browser']}: {size} bytes ({args.size_mib:g} MiB) in {result['chunks']} chunks of "
          f"{args.chunk_size} bytes, {result['pipelineDepth']} in flight; {args.repeat} rounds after "
          f"{args.warmup} warm-up rounds; envelope {result['envelopeSize']} bytes")
    print(f"{'':46} {'median ms':>10} {'p95 ms':>8} {'MiB/s':>7} {'envelope ÷':>11}")
    envelope_median = statistics.median(times["envelope"])
    for key, label in ROWS.items():
        median = statistics.median(times[key])
        ratio = "" if key.startswith("envelope") else f"{envelope_median / median:>10.2f}x"
        print(f"{label:46} {median:>10.1f} {percentile(times[key], 0.95):>8.1f} "
              f"{args.size_mib / (median / 1000):>7.0f} {ratio:>11}")
    in_memory = statistics.median(times["envelopeInMemory"])
    print(f"in memory the envelope takes {in_memory / statistics.median(times['rawPipelined']):.2f}x raw AES-256-GCM "
          f"and {in_memory / statistics.median(times['floor']):.2f}x the AES-GCM + SHA-256 floor; the rest of the "
          f"Blob-to-Blob time is the browser reading and writing Blobs")
    verdict = "meets" if envelope_median < TARGET_MS else "misses"
    print(f"median envelope seal {envelope_median:.1f} ms {verdict} the {TARGET_MS:.0f} ms target for a 5 MB photo")


if __name__ == "__main__":
    main()

// What bench/envelope_browser.py runs in Chromium: seal a photo-sized Blob into a Blob with
// src/envelope; seal the same photo from bytes in memory, discarding the output (the envelope's
// cost without Blob reading and writing); and, in the same page and run, the same plaintext cut
// into the same chunks through raw WebCrypto AES-256-GCM (same nonces, same AAD), alone and with
// the SHA-256 digest chain the envelope's signature needs (the floor no envelope can go under).
// Times are milliseconds.

import { ClinicalMetadata, Manifest, Recipient, SenderIdentity, seal, sealBlob } from "../src/envelope/index.js";
import { PIPELINE_DEPTH } from "../src/envelope/streams.js";

const subtle = crypto.subtle;

function randomBytes(size) {
  const bytes = new Uint8Array(size);
  for (let start = 0; start < size; start += 65536) crypto.getRandomValues(bytes.subarray(start, start + 65536));
  return bytes;
}

function nonce(index, last) {
  const bytes = new Uint8Array(12);
  new DataView(bytes.buffer).setUint32(7, index);
  bytes[11] = last ? 1 : 0;
  return bytes;
}

/** Run `work(index)` for every chunk index, at most `depth` at once, in order of start. */
async function pipelined(count, depth, work, consume) {
  const inFlight = [];
  for (let index = 0; index < count || inFlight.length; ) {
    while (index < count && inFlight.length < depth) inFlight.push(work(index++));
    await consume(await inFlight.shift());
  }
}

async function rawSeal(key, chunks, aad, { depth, digest }) {
  let chain = new Uint8Array(32);
  const last = chunks.length - 1;
  await pipelined(chunks.length, depth, async (index) => {
    const sealed = await subtle.encrypt({ name: "AES-GCM", iv: nonce(index, index === last), additionalData: aad },
      key, chunks[index]);
    return digest ? new Uint8Array(await subtle.digest("SHA-256", sealed)) : null;
  }, async (chunkDigest) => {
    if (!digest) return;
    const step = new Uint8Array(64);
    step.set(chain);
    step.set(chunkDigest, 32);
    chain = new Uint8Array(await subtle.digest("SHA-256", step));
  });
}

async function timed(work) {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

window.envelopeBench = {
  async run({ size, chunkSize, repeat, warmup }) {
    const bytes = randomBytes(size);
    const photo = new Blob([bytes], { type: "image/jpeg" });
    const identity = await subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    const recipientKey = await subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
    const toHex = (data) => Array.from(data, (byte) => byte.toString(16).padStart(2, "0")).join("");
    const sender = new SenderIdentity(toHex(randomBytes(16)), identity.privateKey);
    const recipients = [new Recipient(toHex(randomBytes(16)), "enc-1", recipientKey.publicKey)];
    const manifest = new Manifest("image/jpeg", new ClinicalMetadata({
      patientRef: "Patient/4711", bodySite: "left forearm", laterality: "left", capturedAt: "2025-01-31T14:05:00Z",
    }));
    const aesKey = await subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt"]);
    const aad = randomBytes(32);
    const plaintext = new Uint8Array(4 + manifest.encode().length + size);
    plaintext.set(manifest.frame());
    plaintext.set(bytes, manifest.frame().length);
    const chunks = [];
    for (let start = 0; start < plaintext.length; start += chunkSize) {
      chunks.push(plaintext.subarray(start, start + chunkSize));
    }
    let envelopeSize = 0;
    const runs = {
      envelope: async () => {
        envelopeSize = (await sealBlob(manifest, photo, { sender, recipients, chunkSize })).size;
      },
      envelopeInMemory: async () => {
        const reader = (await seal(manifest, bytes, { sender, recipients, chunkSize })).stream().getReader();
        while (!(await reader.read()).done);
      },
      rawSequential: () => rawSeal(aesKey, chunks, aad, { depth: 1, digest: false }),
      rawPipelined: () => rawSeal(aesKey, chunks, aad, { depth: PIPELINE_DEPTH, digest: false }),
      floor: () => rawSeal(aesKey, chunks, aad, { depth: PIPELINE_DEPTH, digest: true }),
    };
    const times = Object.fromEntries(Object.keys(runs).map((name) => [name, []]));
    for (let round = 0; round < warmup + repeat; round += 1) {
      for (const [name, run] of Object.entries(runs)) {
        const milliseconds = await timed(run);
        if (round >= warmup) times[name].push(milliseconds);
      }
    }
    return { times, chunks: chunks.length, envelopeSize, pipelineDepth: PIPELINE_DEPTH };
  },
};

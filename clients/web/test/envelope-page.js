// What tests/test_envelope_browser.py drives through Playwright: window.envelopeTest seals and
// opens envelopes with src/envelope exactly as an app would, taking keys (base64 DER or raw)
// and small values as arguments, fetching large payloads from the test server and posting
// sealed envelopes back to it. Every function answers a JSON-able object; a failure is
// `{error: {name, code, message}}`, so the test can check the typed error.

import {
  ClinicalMetadata,
  DeviceKeys,
  EnvelopeError,
  EnvelopeSecrets,
  Manifest,
  Recipient,
  SenderIdentity,
  appendRecipients,
  importEd25519PrivateKey,
  importEd25519PublicKey,
  importX25519KeyPair,
  openBlob,
  openBytes,
  readEnvelope,
  seal,
  sealBytes,
} from "../src/envelope/index.js";
import { HPKE } from "../src/envelope/schedule.js";

function fromBase64(text) {
  return Uint8Array.from(atob(text), (character) => character.charCodeAt(0));
}

function toBase64(bytes) {
  let binary = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  return btoa(binary);
}

async function sha256Hex(data) {
  const bytes = data instanceof Blob ? await data.arrayBuffer() : data;
  return Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)),
    (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function manifestFrom(json) {
  return new Manifest(json.content_type, json.clinical ? ClinicalMetadata.fromJson(json.clinical) : null);
}

async function deviceFrom({ deviceId, keys }) {
  const pairs = new Map();
  for (const key of keys) {
    pairs.set(key.keyId, await importX25519KeyPair(fromBase64(key.privateKey), fromBase64(key.publicKey)));
  }
  return new DeviceKeys(deviceId, pairs);
}

async function senderFrom({ deviceId, identityPrivateKey }) {
  return new SenderIdentity(deviceId, await importEd25519PrivateKey(fromBase64(identityPrivateKey)));
}

function recipientsFrom(entries) {
  const published = (key) => key && {
    keyId: key.keyId, publicKey: fromBase64(key.publicKey), signature: fromBase64(key.signature),
  };
  return Promise.all(entries.map((entry) => Recipient.fromDirectory(entry.deviceId, fromBase64(entry.identityKey),
    published(entry.encryptionKey), published(entry.oneTimeKey))));
}

async function answer(work) {
  try {
    return await work();
  } catch (error) {
    const { name, message } = error;
    return { error: { name, message, code: error.code ?? null, envelopeError: error instanceof EnvelopeError } };
  }
}

/** A ReadableStream of `length` bytes `i % 251`, made on demand in `pieceSize` pieces;
 * `pulled()` says how many so far. */
function patternStream(length, pieceSize) {
  let pulled = 0;
  const stream = new ReadableStream({
    pull(controller) {
      const size = Math.min(pieceSize, length - pulled);
      if (size === 0) {
        controller.close();
        return;
      }
      controller.enqueue(Uint8Array.from({ length: size }, (_, index) => (pulled + index) % 251));
      pulled += size;
    },
  });
  return { stream, pulled: () => pulled };
}

async function throwawayDevices() {
  const identity = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  const sender = new SenderIdentity("11".repeat(16), identity.privateKey);
  return { identity, sender, recipient: new Recipient("22".repeat(16), "enc-1", pair.publicKey),
    device: new DeviceKeys("22".repeat(16), { "enc-1": pair }) };
}

async function fetched(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

async function upload(url, body) {
  const response = await fetch(url, { method: "POST", body });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
}

window.envelopeTest = {
  /** A documented test vector sealed from its fixed inputs, HPKE's ephemeral key included
   * (through @hpke/core's own test hook): the whole envelope, base64. */
  sealVector: (vector) => answer(async () => {
    const ephemeral = await importX25519KeyPair(fromBase64(vector.ephemeralPrivateKey),
      fromBase64(vector.ephemeralPublicKey), { extractable: true });
    const wrap = (contentKey, recipientPublicKey, info) => HPKE.seal(
      { recipientPublicKey, info, ekm: ephemeral }, contentKey);
    const device = await deviceFrom(vector.recipient);
    const recipient = new Recipient(vector.recipient.deviceId, vector.recipient.keys[0].keyId,
      device.keyPairs.get(vector.recipient.keys[0].keyId).publicKey);
    const envelope = await sealBytes(manifestFrom(vector.manifest), fromBase64(vector.content), {
      sender: await senderFrom(vector.sender),
      recipients: [recipient],
      chunkSize: vector.chunkSize,
      secrets: new EnvelopeSecrets(fromBase64(vector.contentKey), vector.envelopeId, fromBase64(vector.noncePrefix)),
      wrap,
    });
    return { envelope: toBase64(envelope) };
  }),

  /** Seal the content at `contentUrl` for directory `recipients` and POST the envelope to
   * `uploadUrl`. `via`: "blob" (sealBlob over the fetched Blob) or "stream" (seal over the
   * response's ReadableStream, taking `sealed.stream()`). */
  seal: (request) => answer(async () => {
    const options = {
      sender: await senderFrom(request.sender),
      recipients: await recipientsFrom(request.recipients),
      chunkSize: request.chunkSize,
    };
    const manifest = manifestFrom(request.manifest);
    const response = await fetched(request.contentUrl);
    const started = performance.now();
    let sealed;
    let envelope;
    if (request.via === "stream") {
      sealed = await seal(manifest, response.body, { ...options, contentLength: request.contentLength });
      const reader = sealed.stream().getReader();
      const pieces = [];
      for (let piece = await reader.read(); !piece.done; piece = await reader.read()) pieces.push(piece.value);
      envelope = new Blob(pieces);
    } else {
      sealed = await seal(manifest, await response.blob(), options);
      envelope = await sealed.blob();
    }
    const milliseconds = performance.now() - started;
    await upload(request.uploadUrl, envelope);
    return {
      envelopeId: sealed.envelopeId, length: sealed.length, headLength: sealed.head.length, size: envelope.size,
      milliseconds,
    };
  }),

  /** Open the envelope at `envelopeUrl` as `device`. `via`: "stream" (readEnvelope over the
   * response body, pieces taken from content() one by one), "blob" (openBlob) or "bytes"
   * (openBytes). Reports what was released before any error, and how `authentic` settled. */
  open: (request) => answer(async () => {
    const device = await deviceFrom(request.device);
    const senderKey = await importEd25519PublicKey(fromBase64(request.senderIdentityKey));
    const response = await fetched(request.envelopeUrl);
    const result = { released: 0, releasedPieces: 0, manifest: null, error: null, authentic: null };
    const released = [];
    const verdict = (promise) => promise.then(() => "authentic", (error) => error.name);
    try {
      if (request.via === "stream") {
        const opened = await (await readEnvelope(response.body)).unlock(device, senderKey);
        Object.assign(result, { manifest: opened.manifest.toJson(), keyId: opened.keyId,
          addressedBySender: opened.addressedBySender, envelopeId: opened.envelopeId,
          senderDeviceId: opened.senderDeviceId });
        try {
          for await (const piece of opened.content()) {
            released.push(piece);
            result.released += piece.length;
            result.releasedPieces += 1;
          }
        } finally {
          result.authentic = await verdict(opened.authentic);
        }
      } else {
        const message = request.via === "blob"
          ? await openBlob(await response.blob(), device, senderKey)
          : await openBytes(new Uint8Array(await response.arrayBuffer()), device, senderKey);
        Object.assign(result, { manifest: message.manifest.toJson(), keyId: message.keyId,
          addressedBySender: message.addressedBySender, envelopeId: message.envelopeId,
          senderDeviceId: message.senderDeviceId, contentType: message.content.type ?? null });
        const content = message.content instanceof Blob
          ? new Uint8Array(await message.content.arrayBuffer()) : message.content;
        released.push(content);
        result.released = released[0].length;
        result.authentic = "authentic";
      }
    } catch (error) {
      if (!(error instanceof EnvelopeError)) throw error;
      result.error = { name: error.name, code: error.code, message: error.message };
    }
    result.releasedSha256 = await sha256Hex(new Blob(released));
    return result;
  }),

  /** The envelope head `head` (base64) with stanzas for directory `recipients` appended by `device`. */
  append: (request) => answer(async () => {
    const head = await appendRecipients(fromBase64(request.head), await deviceFrom(request.device),
      await recipientsFrom(request.recipients));
    return { head: toBase64(head) };
  }),

  /** Seal a `contentLength`-byte stream made on demand, read `outputPieces` pieces of the
   * envelope, then cancel: how much content had been pulled by then, and after the cancel. */
  sealLazily: ({ contentLength, pieceSize, outputPieces }) => answer(async () => {
    const { sender, recipient } = await throwawayDevices();
    const content = patternStream(contentLength, pieceSize);
    const sealed = await seal(new Manifest("video/mp4"), content.stream,
      { sender, recipients: [recipient], contentLength });
    const reader = sealed.stream().getReader();
    for (let count = 0; count < outputPieces; count += 1) await reader.read();
    const pulled = content.pulled();
    await reader.cancel();
    await new Promise((resolve) => setTimeout(resolve, 50));
    return { pulled, pulledAfterCancel: content.pulled(), envelopeLength: sealed.length };
  }),

  /** Seal a `contentLength`-byte stream made on demand and open the envelope's stream as it is
   * sealed, checking every released byte; the most content pulled but not yet released. */
  sealIntoOpen: ({ contentLength, pieceSize }) => answer(async () => {
    const { identity, sender, recipient, device } = await throwawayDevices();
    const content = patternStream(contentLength, pieceSize);
    const sealed = await seal(new Manifest("video/mp4"), content.stream,
      { sender, recipients: [recipient], contentLength });
    const opened = await (await readEnvelope(sealed.stream())).unlock(device, identity.publicKey);
    let released = 0;
    let mostInTransit = 0;
    for await (const piece of opened.content()) {
      if (piece.some((byte, index) => byte !== (released + index) % 251)) throw new Error(`wrong bytes at ${released}`);
      released += piece.length;
      mostInTransit = Math.max(mostInTransit, content.pulled() - released);
    }
    return { released, mostInTransit, authentic: await opened.authentic };
  }),

  /** Decode each manifest (base64): its JSON when accepted, else the error's name. */
  decodeManifests: (manifests) => answer(async () => manifests.map((encoded) => {
    try {
      return { json: Manifest.decode(fromBase64(encoded)).toJson() };
    } catch (error) {
      return { error: error.name };
    }
  })),
};

// Sealing: manifest + content in, envelope bytes out, streaming in bounded memory.
//
//     const sealed = await seal(manifest, photoBlob, {sender: me, recipients: [...]});
//     sealed.head                  // fixed header + stanzas + MAC, known before any content is read
//     sealed.stream()              // ReadableStream: the head, then each chunk, then the signature
//     await sealed.blob()          // or all of it as a Blob
//
// The content is a Blob (a File from a file picker or a camera capture), bytes, or a
// ReadableStream / async iterable of byte pieces with `contentLength` given. It is read once,
// chunk by chunk, while the envelope streams out; a few chunks are sealed in parallel.

import { asBytes, concat, sha256, toHex } from "./bytes.js";
import {
  CONTENT_KEY_LENGTH,
  DEFAULT_CHUNK_SIZE,
  ENC_LENGTH,
  ID_LENGTH,
  MAX_CHUNK_SIZE,
  MAX_PLAINTEXT_LENGTH,
  MAX_STANZAS,
  MIN_CHUNK_SIZE,
  NONCE_PREFIX_LENGTH,
  WRAPPED_KEY_LENGTH,
  FixedHeader,
  Head,
  Stanza,
} from "./format.js";
import { Recipient, SenderIdentity } from "./keys.js";
import { Manifest } from "./manifest.js";
import {
  chunkNonce,
  derive,
  headerMac,
  hpkeWrap,
  PayloadDigest,
  signatureMessage,
  wrapInfo,
} from "./schedule.js";
import { blobOf, chunked, piecesOf, PIPELINE_DEPTH, streamOf } from "./streams.js";

const subtle = () => globalThis.crypto.subtle;

/** The random values of one envelope. Only tests fix them, to reproduce the test vectors in
 * docs/envelope.md; everything else lets `seal` draw them. */
export class EnvelopeSecrets {
  constructor(contentKey, envelopeId, noncePrefix) {
    if (typeof envelopeId !== "string" || !/^[0-9a-f]{32}$/.test(envelopeId)) {
      throw new RangeError("an envelope id is 32 lowercase hex characters");
    }
    Object.assign(this, { contentKey: asBytes(contentKey), envelopeId, noncePrefix: asBytes(noncePrefix) });
    Object.freeze(this);
  }

  static random() {
    const random = (length) => crypto.getRandomValues(new Uint8Array(length));
    return new EnvelopeSecrets(random(CONTENT_KEY_LENGTH), toHex(random(ID_LENGTH)), random(NONCE_PREFIX_LENGTH));
  }
}

/** The HPKE stanza that gives `recipient` this envelope's content key. `wrap(contentKey,
 * publicKey, info)` returns `{enc, ct}`; tests replace it to fix HPKE's ephemeral key. */
export async function wrapStanza(contentKey, headerDigest, recipient, wrap = hpkeWrap) {
  let wrapped;
  try {
    wrapped = await wrap(contentKey, recipient.publicKey, wrapInfo(headerDigest, recipient.deviceId, recipient.keyId));
  } catch {
    throw new RangeError(`the key ${JSON.stringify(recipient.keyId)} of device ${recipient.deviceId} is unusable`);
  }
  const enc = asBytes(wrapped.enc);
  const ct = asBytes(wrapped.ct);
  if (enc.length !== ENC_LENGTH || ct.length !== WRAPPED_KEY_LENGTH) {
    throw new RangeError("the key wrap returned an unexpected length");
  }
  return new Stanza(recipient.deviceId, recipient.keyId, enc, ct);
}

export function checkRecipients(recipients, existing = []) {
  if (!Array.isArray(recipients) || !recipients.every((recipient) => recipient instanceof Recipient)) {
    throw new TypeError("recipients must be an array of Recipient");
  }
  const deviceIds = [...existing, ...recipients.map((recipient) => recipient.deviceId)];
  if (recipients.length === 0) throw new RangeError("an envelope needs at least one recipient");
  if (deviceIds.length > MAX_STANZAS) throw new RangeError(`an envelope has at most ${MAX_STANZAS} recipients`);
  if (new Set(deviceIds).size !== deviceIds.length) throw new RangeError("a device appears twice among the recipients");
}

async function sealChunk(payloadKey, nonce, headerDigest, plaintext) {
  const sealed = new Uint8Array(await subtle().encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: headerDigest, tagLength: 128 }, payloadKey, plaintext));
  return { sealed, chunkDigest: await sha256(sealed) };
}

/** An envelope being sealed: `head` at once, the body as it streams out. The content is read
 * once, so take the envelope once: `stream()`, `body()`, `blob()` or `for await`. */
export class SealedEnvelope {
  #head;
  #keys;
  #sender;
  #plaintext;
  #started = false;

  constructor(head, keys, sender, plaintext) {
    this.#head = head;
    this.#keys = keys;
    this.#sender = sender;
    this.#plaintext = plaintext;
    this.head = head.encode();
    this.envelopeId = head.header.envelopeId;
    this.length = this.head.length + head.header.bodyLength;
    Object.freeze(this);
  }

  async* [Symbol.asyncIterator]() {
    const body = this.#body();
    yield this.head;
    yield* body;
  }

  /** A ReadableStream of the whole envelope: head, chunks, signature. */
  stream() {
    return streamOf(this[Symbol.asyncIterator]());
  }

  /** A ReadableStream of the body alone: each chunk (ciphertext || tag) as it is sealed, then
   * the sender's signature. The relay stores head and body apart. */
  body() {
    return streamOf(this.#body());
  }

  /** The whole envelope as a Blob. */
  blob() {
    return blobOf(this, "application/octet-stream");
  }

  #body() {
    if (this.#started) throw new Error("an envelope's body streams only once");
    this.#started = true;
    return this.#sealedBody();
  }

  async* #sealedBody() {
    const header = this.#head.header;
    const headerDigest = await header.digest();
    const digest = new PayloadDigest(headerDigest);
    const last = header.chunkCount - 1;
    const plaintext = this.#plaintext;
    const inFlight = [];
    let index = 0;
    let exhausted = false;
    try {
      for (;;) {
        while (!exhausted && inFlight.length < PIPELINE_DEPTH) {
          const { value, done } = await plaintext.next();
          if (done) {
            exhausted = true;
          } else {
            const task = sealChunk(this.#keys.payloadKey, chunkNonce(header.noncePrefix, index, index === last),
              headerDigest, value);
            task.catch(() => {});
            inFlight.push(task);
            index += 1;
          }
        }
        if (inFlight.length === 0) break;
        const { sealed, chunkDigest } = await inFlight.shift();
        await digest.fold(chunkDigest);
        yield sealed;
      }
    } finally {
      await plaintext.return();
    }
    const message = signatureMessage(headerDigest, await this.#head.sealedStanzasDigest(), digest.value);
    yield new Uint8Array(await subtle().sign("Ed25519", this.#sender.signingKey, message));
  }
}

function contentLengthOf(content, contentLength) {
  const known = content instanceof Blob ? content.size
    : content instanceof ArrayBuffer || ArrayBuffer.isView(content) ? asBytes(content).length : undefined;
  if (known !== undefined && contentLength !== undefined && contentLength !== known) {
    throw new RangeError(`contentLength ${contentLength} differs from the content's ${known} bytes`);
  }
  const length = known ?? contentLength;
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new RangeError("a stream's contentLength must be given as a non-negative integer");
  }
  return length;
}

async function* framed(frame, content, contentLength) {
  yield frame;
  let received = 0;
  for await (const piece of piecesOf(content)) {
    received += piece.length;
    if (received > contentLength) {
      throw new RangeError(`the content is longer than the ${contentLength} bytes announced`);
    }
    yield piece;
  }
  if (received !== contentLength) {
    throw new RangeError(`the content ended after ${received} of the ${contentLength} bytes announced`);
  }
}

/**
 * Seal `content` for `recipients` (Recipient objects, 1 to 1000 distinct devices) as `sender`
 * (a SenderIdentity). Arguments are checked now (RangeError, TypeError); the content is read as
 * the body streams, and a source yielding another length than announced fails the stream with
 * RangeError. `secrets` and `wrap` exist for the test vectors only.
 */
export async function seal(manifest, content, {
  contentLength, sender, recipients, chunkSize = DEFAULT_CHUNK_SIZE, secrets = EnvelopeSecrets.random(),
  wrap = hpkeWrap,
} = {}) {
  if (!(manifest instanceof Manifest)) throw new TypeError("manifest must be a Manifest");
  if (!(sender instanceof SenderIdentity)) throw new TypeError("sender must be a SenderIdentity");
  checkRecipients(recipients);
  if (!Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new RangeError(`chunk size must be within ${MIN_CHUNK_SIZE}..${MAX_CHUNK_SIZE}`);
  }
  const frame = manifest.frame();
  const length = contentLengthOf(content, contentLength);
  const plaintextLength = frame.length + length;
  if (plaintextLength > MAX_PLAINTEXT_LENGTH) {
    throw new RangeError(`the content length must be within 0..${MAX_PLAINTEXT_LENGTH - frame.length}`);
  }
  if (secrets.contentKey.length !== CONTENT_KEY_LENGTH || secrets.noncePrefix.length !== NONCE_PREFIX_LENGTH) {
    throw new RangeError("a content key is 32 bytes and a nonce prefix 7");
  }
  const keys = await derive(secrets.contentKey, secrets.envelopeId);
  const header = new FixedHeader({
    envelopeId: secrets.envelopeId,
    senderDeviceId: sender.deviceId,
    chunkSize,
    plaintextLength,
    sealedStanzaCount: recipients.length,
    noncePrefix: secrets.noncePrefix,
    commitment: keys.commitment,
  });
  const headerDigest = await header.digest();
  const stanzas = await Promise.all(
    recipients.map((recipient) => wrapStanza(secrets.contentKey, headerDigest, recipient, wrap)));
  const mac = await headerMac(keys.headerMacKey, new Head(header, stanzas, new Uint8Array(0)).macInput());
  const plaintext = chunked(framed(frame, content, length), chunkSize);
  return new SealedEnvelope(new Head(header, stanzas, mac), keys, sender, plaintext);
}

/** A whole envelope, as bytes, for a small message held in memory. */
export async function sealBytes(manifest, content, options) {
  const sealed = await seal(manifest, asBytes(content), options);
  const pieces = [];
  for await (const piece of sealed) pieces.push(piece);
  return concat(...pieces);
}

/** A whole envelope as a Blob, e.g. for a photo: `content` is a Blob (a File) or bytes. */
export async function sealBlob(manifest, content, options) {
  return (await seal(manifest, content, options)).blob();
}

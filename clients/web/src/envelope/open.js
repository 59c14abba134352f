// Opening: envelope bytes in, manifest and content out, streaming in bounded memory.
//
//     const envelope = await readEnvelope(response.body);    // the head only; no key needed
//     const identity = await directoryKey(envelope.senderDeviceId);
//     const opened = await envelope.unlock(myKeys, identity);
//     opened.manifest                                         // provisional, like every piece
//     for await (const piece of opened.content()) { ... }     // each piece's tag verified first
//     await opened.authentic                                  // true only after the signature verified
//
// A piece is released only after its own AES-GCM tag verified, but it is *provisional* until
// `content()` ends without an error (and `authentic` resolves): a co-recipient knows the
// content key and could have forged chunks, which only the signature at the very end exposes.
// Keep pieces somewhere temporary and show, store or forward them only after the end; on any
// EnvelopeError discard them. `openBytes` and `openBlob` do exactly that.

import { concat, sha256 } from "./bytes.js";
import { BadSignature, ChunkTampered, MalformedEnvelope, MalformedManifest } from "./errors.js";
import {
  COUNT_LENGTH,
  FIXED_HEADER_LENGTH,
  MAC_LENGTH,
  PREAMBLE_LENGTH,
  SIGNATURE_LENGTH,
  STANZA_PREFIX_LENGTH,
  STANZA_SUFFIX_LENGTH,
  TAG_LENGTH,
  checkKeyIdLength,
  checkPreamble,
  checkStanzaCount,
  decodeFixedHeader,
  decodeHead,
} from "./format.js";
import { DeviceKeys } from "./keys.js";
import { LENGTH_PREFIX, Manifest, parseFrameLength } from "./manifest.js";
import { chunkNonce, PayloadDigest, signatureMessage } from "./schedule.js";
import { blobOf, ByteReader, PIPELINE_DEPTH } from "./streams.js";
import { unlock } from "./unlock.js";

const subtle = () => globalThis.crypto.subtle;
const EMPTY = new Uint8Array(0);

async function openChunk(payloadKey, nonce, headerDigest, sealed, index, count) {
  const [plain, chunkDigest] = await Promise.all([
    subtle().decrypt({ name: "AES-GCM", iv: nonce, additionalData: headerDigest, tagLength: 128 }, payloadKey, sealed)
      .catch(() => {
        throw new ChunkTampered(`chunk ${index} of ${count} does not verify`);
      }),
    sha256(sealed),
  ]);
  return { plain: new Uint8Array(plain), chunkDigest };
}

/**
 * An envelope this device unlocked. `manifest` and the pieces of `content()` are provisional
 * until `content()` ends without an error. `authentic` is a promise: it resolves to true once
 * the last chunk and the sender's signature verified, and rejects with the error that ended
 * the content otherwise (or when the content was not read to its end).
 */
export class OpenedEnvelope {
  #unlocked;
  #senderKey;
  #reader;
  #chunks;
  #leftover = EMPTY;
  #started = false;
  #settle;

  constructor(head, unlocked, senderKey, reader) {
    this.head = head;
    this.keyId = unlocked.keyId;
    this.addressedBySender = unlocked.stanzaIndex < head.header.sealedStanzaCount;
    this.envelopeId = head.header.envelopeId;
    this.senderDeviceId = head.header.senderDeviceId;
    this.manifest = null;
    this.authentic = new Promise((resolve, reject) => {
      this.#settle = (error) => (error ? reject(error) : resolve(true));
    });
    this.authentic.catch(() => {});
    this.#unlocked = unlocked;
    this.#senderKey = senderKey;
    this.#reader = reader;
    this.#chunks = this.#verifiedChunks();
  }

  /**
   * The content after the manifest, piece by piece, each released only after its tag
   * verified. Ends normally only after the final chunk and the signature verified; otherwise
   * throws an EnvelopeError, and everything yielded so far must be discarded.
   */
  async* content() {
    if (this.#started) throw new Error("an envelope's content streams only once");
    this.#started = true;
    let finished = false;
    try {
      if (this.#leftover.length) {
        const leftover = this.#leftover;
        this.#leftover = EMPTY;
        yield leftover;
      }
      yield* this.#chunks;
      finished = true;
    } catch (error) {
      this.#settle(error);
      throw error;
    } finally {
      if (!finished) {
        this.#settle(new Error("the envelope's content was not read to its end"));
        await this.#chunks.return();
        await this.#reader.close();
      }
    }
  }

  /** Read the (provisional) manifest from the first chunks; `unlock` calls this. */
  async readManifest() {
    try {
      const length = this.head.header.plaintextLength;
      if (length < LENGTH_PREFIX) throw new MalformedManifest("the plaintext is too short to hold a manifest");
      let buffer = EMPTY;
      const fill = async (size) => {
        while (buffer.length < size) buffer = concat(buffer, (await this.#chunks.next()).value);
      };
      await fill(LENGTH_PREFIX);
      const end = LENGTH_PREFIX + parseFrameLength(buffer.subarray(0, LENGTH_PREFIX), length);
      await fill(end);
      this.manifest = Manifest.decode(buffer.subarray(LENGTH_PREFIX, end));
      this.#leftover = buffer.slice(end);
    } catch (error) {
      this.#settle(error);
      await this.#reader.close();
      throw error;
    }
  }

  async* #verifiedChunks() {
    const header = this.head.header;
    const headerDigest = await header.digest();
    const digest = new PayloadDigest(headerDigest);
    const payloadKey = this.#unlocked.keys.payloadKey;
    const count = header.chunkCount;
    const inFlight = [];
    let scheduled = 0;
    const schedule = () => {
      while (scheduled < count && inFlight.length < PIPELINE_DEPTH) {
        const index = scheduled;
        const previous = inFlight.length ? inFlight[inFlight.length - 1].read : Promise.resolve();
        const read = previous.then(() => this.#reader.readExactly(header.chunkLength(index) + TAG_LENGTH,
          `chunk ${index}`));
        const opened = read.then((sealed) => openChunk(payloadKey, chunkNonce(header.noncePrefix, index,
          index === count - 1), headerDigest, sealed, index, count));
        read.catch(() => {});
        opened.catch(() => {});
        inFlight.push({ read, opened });
        scheduled += 1;
      }
    };
    schedule();
    while (inFlight.length) {
      const { plain, chunkDigest } = await inFlight[0].opened;
      inFlight.shift();
      await digest.fold(chunkDigest);
      schedule();
      yield plain;
    }
    const signature = await this.#reader.readExactly(SIGNATURE_LENGTH, "the signature");
    if (!(await this.#reader.atEnd())) throw new MalformedEnvelope("bytes follow the signature");
    const message = signatureMessage(headerDigest, await this.head.sealedStanzasDigest(), digest.value);
    const valid = await subtle().verify("Ed25519", this.#senderKey, signature, message).catch(() => false);
    if (!valid) throw new BadSignature("the sender's signature does not verify");
    this.#settle(null);
  }
}

/** An envelope whose head was read: routing facts and the sender's device id, no plaintext. */
export class EnvelopeReader {
  #reader;
  #unlocked = false;

  constructor(head, reader) {
    this.head = head;
    this.#reader = reader;
  }

  /** Whose identity key `unlock` needs: look it up in the key directory. */
  get senderDeviceId() {
    return this.head.header.senderDeviceId;
  }

  /** Unwrap this device's stanza, check the header, and read the (provisional) manifest.
   * `senderKey` is the Ed25519 public CryptoKey of `senderDeviceId` from the key directory. */
  async unlock(device, senderKey) {
    if (!(device instanceof DeviceKeys)) throw new TypeError("device must be a DeviceKeys");
    if (!(senderKey instanceof CryptoKey) || senderKey.algorithm.name !== "Ed25519" || senderKey.type !== "public") {
      throw new TypeError("senderKey must be an Ed25519 public CryptoKey");
    }
    if (this.#unlocked) throw new Error("an envelope is unlocked only once");
    this.#unlocked = true;
    let unlocked;
    try {
      unlocked = await unlock(this.head, device);
    } catch (error) {
      await this.#reader.close();
      throw error;
    }
    const opened = new OpenedEnvelope(this.head, unlocked, senderKey, this.#reader);
    await opened.readManifest();
    return opened;
  }
}

/** Read and check the head of the envelope `source` holds (a ReadableStream, a Blob, bytes or
 * an async iterable of bytes); at most MAX_HEAD_LENGTH bytes are read. */
export async function readEnvelope(source) {
  const reader = new ByteReader(source);
  try {
    const preamble = await reader.readExactly(PREAMBLE_LENGTH, "the fixed header");
    checkPreamble(preamble);
    const fixed = concat(preamble, await reader.readExactly(FIXED_HEADER_LENGTH - PREAMBLE_LENGTH, "the fixed header"));
    const header = decodeFixedHeader(fixed);
    const countBytes = await reader.readExactly(COUNT_LENGTH, "the stanza section");
    const count = (countBytes[0] << 8) | countBytes[1];
    checkStanzaCount(header, count);
    const parts = [fixed, countBytes];
    for (let index = 0; index < count; index += 1) {
      const start = await reader.readExactly(STANZA_PREFIX_LENGTH, `stanza ${index}`);
      checkKeyIdLength(start[start.length - 1]);
      parts.push(start, await reader.readExactly(start[start.length - 1] + STANZA_SUFFIX_LENGTH, `stanza ${index}`));
    }
    parts.push(await reader.readExactly(MAC_LENGTH, "the header MAC"));
    return new EnvelopeReader(decodeHead(concat(...parts)), reader);
  } catch (error) {
    await reader.close();
    throw error;
  }
}

/** A whole envelope opened and verified. */
export class OpenedMessage {
  constructor(opened, content) {
    this.envelopeId = opened.envelopeId;
    this.senderDeviceId = opened.senderDeviceId;
    this.manifest = opened.manifest;
    this.content = content;
    this.keyId = opened.keyId;
    this.addressedBySender = opened.addressedBySender;
    Object.freeze(this);
  }
}

/** Open a small envelope held in memory; returns (content as bytes) only once everything verified. */
export async function openBytes(data, device, senderKey) {
  const opened = await (await readEnvelope(data)).unlock(device, senderKey);
  const pieces = [];
  for await (const piece of opened.content()) pieces.push(piece);
  return new OpenedMessage(opened, concat(...pieces));
}

/** Open an envelope (a ReadableStream such as a download's body, a Blob, bytes) into a Blob
 * typed by the manifest; returns only once everything verified, so nothing unverified is
 * ever shown. On any error the partial content is dropped. */
export async function openBlob(source, device, senderKey) {
  const opened = await (await readEnvelope(source)).unlock(device, senderKey);
  const content = await blobOf(opened.content(), opened.manifest.contentType);
  return new OpenedMessage(opened, content);
}

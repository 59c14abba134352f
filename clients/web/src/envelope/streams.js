// Byte streams: exact reads over whatever holds the bytes (a ReadableStream, a Blob, bytes, or
// an async iterable of byte pieces), re-cutting pieces into chunks, and turning sealed or
// opened pieces back into a ReadableStream or a Blob.

import { asBytes } from "./bytes.js";
import { Truncated } from "./errors.js";

/** How many chunks are sealed or opened at once: enough to keep WebCrypto's threads busy, few
 * enough that memory stays a few chunks whatever the content's size. */
export const PIPELINE_DEPTH = 8;
/** A Blob being assembled keeps at most this many loose bytes in JavaScript memory; the rest
 * is handed to the browser's blob storage, which may keep it on disk. */
const BLOB_BATCH_SIZE = 8 * 1024 * 1024;

/** The pieces of `source`, as Uint8Arrays, in order. A stream's next piece is requested as
 * soon as one is handed out, so reading overlaps with sealing or opening it. */
export async function* piecesOf(source) {
  if (source instanceof Blob || source instanceof ReadableStream) {
    const reader = (source instanceof Blob ? source.stream() : source).getReader();
    const read = () => {
      const piece = reader.read();
      piece.catch(() => {});
      return piece;
    };
    let finished = false;
    try {
      let next = read();
      for (;;) {
        const { value, done } = await next;
        if (done) {
          finished = true;
          return;
        }
        next = read();
        yield asBytes(value);
      }
    } finally {
      if (!finished) await reader.cancel().catch(() => {});
      reader.releaseLock();
    }
  } else if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    yield asBytes(source);
  } else if (source && typeof source[Symbol.asyncIterator] === "function") {
    for await (const piece of source) yield asBytes(piece);
  } else {
    throw new TypeError("expected a Blob, a ReadableStream, bytes or an async iterable of bytes");
  }
}

/** Reads exact byte counts from the pieces of a source of any size. */
export class ByteReader {
  #pieces;
  #queue = [];
  #buffered = 0;

  constructor(source) {
    this.#pieces = piecesOf(source);
  }

  /** The next `size` bytes, or Truncated naming `what` if the source ends first. A view into
   * the source's piece when one piece holds them all, else a copy. */
  async readExactly(size, what) {
    if (size === 0) return new Uint8Array(0);
    while (this.#buffered < size) {
      if (!(await this.#more())) throw new Truncated(`the envelope ends inside ${what}`);
    }
    const first = this.#queue[0];
    if (first.length >= size) {
      this.#take(size);
      return first.subarray(0, size);
    }
    const result = new Uint8Array(size);
    let filled = 0;
    while (filled < size) {
      const piece = this.#queue[0];
      const taken = Math.min(piece.length, size - filled);
      result.set(piece.subarray(0, taken), filled);
      this.#take(taken);
      filled += taken;
    }
    return result;
  }

  /** True when the source has no bytes left. */
  async atEnd() {
    while (this.#buffered === 0) {
      if (!(await this.#more())) return true;
    }
    return false;
  }

  /** Stop reading: the source is released (a stream is cancelled). */
  async close() {
    await this.#pieces.return();
  }

  #take(size) {
    this.#queue[0] = this.#queue[0].subarray(size);
    if (this.#queue[0].length === 0) this.#queue.shift();
    this.#buffered -= size;
  }

  async #more() {
    const { value, done } = await this.#pieces.next();
    if (done) return false;
    if (value.length) {
      this.#queue.push(value);
      this.#buffered += value.length;
    }
    return true;
  }
}

/**
 * Re-cut `pieces` into chunks of `chunkSize` bytes (the last one shorter). A chunk lying
 * inside one piece is handed out as a view of it, without copying.
 */
export async function* chunked(pieces, chunkSize) {
  let pending = null;
  let filled = 0;
  for await (const source of pieces) {
    let piece = source;
    if (pending) {
      const taken = Math.min(chunkSize - filled, piece.length);
      pending.set(piece.subarray(0, taken), filled);
      filled += taken;
      piece = piece.subarray(taken);
      if (filled < chunkSize) continue;
      yield pending;
      pending = null;
    }
    while (piece.length >= chunkSize) {
      yield piece.subarray(0, chunkSize);
      piece = piece.subarray(chunkSize);
    }
    if (piece.length) {
      pending = new Uint8Array(chunkSize);
      pending.set(piece);
      filled = piece.length;
    }
  }
  if (pending) yield pending.subarray(0, filled);
}

/** A ReadableStream of what the async iterator `pieces` yields, produced only as it is read;
 * cancelling the stream closes the iterator. */
export function streamOf(pieces) {
  return new ReadableStream({
    async pull(controller) {
      const { value, done } = await pieces.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() {
      await pieces.return();
    },
  }, { highWaterMark: 0 });
}

/** A Blob of everything `pieces` yields; only the last few MiB are held in JavaScript memory. */
export async function blobOf(pieces, type = "") {
  const parts = [];
  let loose = [];
  let looseBytes = 0;
  for await (const piece of pieces) {
    loose.push(piece);
    looseBytes += piece.length;
    if (looseBytes >= BLOB_BATCH_SIZE) {
      parts.push(new Blob(loose));
      loose = [];
      looseBytes = 0;
    }
  }
  parts.push(new Blob(loose));
  return new Blob(parts, { type });
}

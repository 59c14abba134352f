// Sealing a photo to the recipients and uploading the envelope with tus (docs/uploads.md):
// a bearer token, metadata `sha256` (of the whole envelope) and nothing else. A dropped
// connection is retried from the relay's offset (HEAD, then PATCH from there); when the
// retries are used up, `start()` again resumes the same upload. Nothing is remembered in
// localStorage: the upload lives as long as the page.

import { sha256, toHex } from "../envelope/bytes.js";
import { sealBlob } from "../envelope/seal.js";
import { Upload } from "../../vendor/tus-js-client/tus.js";
import { UPLOADS } from "./api.js";
import { PortalApiError } from "./errors.js";
import { PortalManifest } from "./manifest.js";

const CHUNK_SIZE = 256 * 1024;
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000];

/** The photo (a JPEG Blob) sealed for `recipients` as `sender`, with the consent in its manifest. */
export function sealPhoto(photo, { sender, recipients, consent, capturedAt, given }) {
  return sealBlob(new PortalManifest(photo.type || "image/jpeg", consent, capturedAt, given), photo,
    { sender, recipients });
}

function refusal(error) {
  const response = error.originalResponse;
  if (!response) return new PortalApiError(0, "network_error", "the connection to the relay was lost");
  let body = {};
  try {
    body = JSON.parse(response.getBody()).error ?? {};
  } catch {
    // Not the relay's JSON error.
  }
  const status = response.getStatus();
  return new PortalApiError(status, body.code ?? `http_${status}`, body.message ?? "the upload was refused",
    body.details ?? null);
}

function retryable(error) {
  const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
  return status === 0 || status >= 500 || status === 460;
}

/** One sealed envelope on its way to the relay. */
export class EnvelopeUpload {
  #upload;
  #settle = null;

  constructor(envelope, digest, token, onProgress) {
    this.size = envelope.size;
    this.#upload = new Upload(envelope, {
      endpoint: UPLOADS,
      chunkSize: CHUNK_SIZE,
      retryDelays: RETRY_DELAYS,
      headers: { Authorization: `Bearer ${token}` },
      metadata: { sha256: digest },
      storeFingerprintForResuming: false,
      onShouldRetry: retryable,
      onProgress: (sent) => onProgress(sent),
      onSuccess: () => this.#settle?.resolve(),
      onError: (error) => this.#settle?.reject(refusal(error)),
    });
  }

  /** Start, or resume after a failure from the relay's offset; resolves once the relay holds it all. */
  start() {
    return new Promise((resolve, reject) => {
      this.#settle = { resolve, reject };
      this.#upload.start();
    });
  }
}

/** Seal `photo` and prepare its upload; `onProgress(bytesSent)` follows it. */
export async function prepareUpload(photo, { sender, recipients, consent, capturedAt, given, token, onProgress }) {
  const envelope = await sealPhoto(photo, { sender, recipients, consent, capturedAt, given });
  const digest = toHex(await sha256(new Uint8Array(await envelope.arrayBuffer())));
  return new EnvelopeUpload(envelope, digest, token, onProgress);
}

// What tests/test_tus_browser.py drives through Playwright: window.tusTest uploads an envelope
// the test publishes to the relay's tus endpoint with the vendored tus-js-client, configured as
// docs/uploads.md says (a bearer token, metadata `sha256` and `conversation` and nothing else)
// and otherwise unchanged. Each function answers `{result}` once the upload finished, or
// `{error: {message, status, body}}` with the relay's answer when tus-js-client reported an
// error (its onError).

import { Upload } from "../vendor/tus-js-client/tus.js";

async function envelopeFrom(envelopeUrl) {
  const response = await fetch(envelopeUrl);
  if (!response.ok) throw new Error(`fetching the envelope answered ${response.status}`);
  return response.blob();
}

function optionsFor({ endpoint, token, sha256, conversation, chunkSize, extraMetadata = {} }, callbacks) {
  return {
    endpoint,
    chunkSize,
    headers: { Authorization: `Bearer ${token}` },
    metadata: { sha256, conversation, ...extraMetadata },
    removeFingerprintOnSuccess: true,
    ...callbacks,
  };
}

// Upload the envelope at `envelopeUrl` in PATCHes of `chunkSize` bytes; resolves with its URL.
async function upload(options) {
  const envelope = await envelopeFrom(options.envelopeUrl);
  return new Promise((resolve, reject) => {
    const tus = new Upload(envelope, optionsFor(options, {
      onSuccess: () => resolve(tus.url),
      onError: reject,
    }));
    tus.start();
  });
}

// Start uploading, abort once the first PATCH was answered (as a closed tab or a lost network
// would), then upload the same envelope again: tus-js-client finds the unfinished upload it
// remembered (localStorage), asks the relay for its offset and sends only the rest.
async function uploadInterrupted(options) {
  const envelope = await envelopeFrom(options.envelopeUrl);
  const abortedAt = await new Promise((resolve, reject) => {
    const first = new Upload(envelope, optionsFor(options, {
      onChunkComplete: (_, bytesAccepted) => first.abort().then(() => resolve(bytesAccepted), reject),
      onSuccess: () => reject(new Error("the upload finished before it could be aborted")),
      onError: reject,
    }));
    first.start();
  });
  const url = await new Promise((resolve, reject) => {
    const tus = new Upload(envelope, optionsFor(options, {
      onSuccess: () => resolve(tus.url),
      onError: reject,
    }));
    tus.findPreviousUploads().then((found) => {
      if (found.length !== 1) throw new Error(`expected one unfinished upload to resume, found ${found.length}`);
      tus.resumeFromPreviousUpload(found[0]);
      tus.start();
    }).catch(reject);
  });
  const remembered = await new Upload(envelope, optionsFor(options, {})).findPreviousUploads();
  return { abortedAt, url, remembered: remembered.length };
}

async function settle(promise) {
  try {
    return { result: await promise };
  } catch (error) {
    const response = error.originalResponse ?? null;
    return { error: { message: String(error.message ?? error), status: response ? response.getStatus() : null,
      body: response ? response.getBody() : null } };
  }
}

window.tusTest = {
  upload: (options) => settle(upload(options)),
  uploadInterrupted: (options) => settle(uploadInterrupted(options)),
};

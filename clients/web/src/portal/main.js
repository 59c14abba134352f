// The patient portal page (docs/portal.md, "The page"): opening -> verify -> consent ->
// capture -> sending -> done, or an end page. The link's secret, the session token, the
// photos and the consent live in this module's memory only; nothing is written to storage.

import { PortalApiError } from "./errors.js";
import { PortalApi } from "./api.js";
import { reencode, snapshot, startCamera, stopCamera } from "./capture.js";
import { verifiedRecipients } from "./commitment.js";
import { consentRecord } from "./consent.js";
import { takeLink } from "./link.js";
import { openNote } from "./note.js";
import { registerSender } from "./sender.js";
import { prepareUpload } from "./upload.js";
import * as views from "./views.js";

const $ = (id) => document.getElementById(id);
const api = new PortalApi();
const state = {
  link: null, session: null, recipients: null, note: null, consent: null, photos: [], uploadsLeft: 0,
  progress: { total: 0, done: 0, finished: 0, count: 0 },
};

function fail(error) {
  const code = error instanceof PortalApiError || typeof error?.code === "string" ? error.code : "problem";
  stopCamera($("viewfinder"));
  release();
  views.showEnd(code);
}

function release() {
  state.photos = [];
  views.clearPreviews();
}

async function open() {
  state.link = takeLink();
  if (!state.link) return views.showEnd("link_incomplete");
  state.session = await api.open(state.link.invitationId, state.link.secret);
  state.uploadsLeft = state.session.uploads_left;
  views.showVerification(state.session.verification_method);
}

async function askForCode() {
  $("send-code").disabled = true;
  try {
    await api.askForCode();
    $("code-sent").hidden = false;
    views.showProblem("verify-problem", null);
  } catch (error) {
    if (!(error instanceof PortalApiError) || error.code !== "rate_limited") throw error;
    views.showProblem("verify-problem", "A code was sent a moment ago. Please wait a little before asking again.");
  } finally {
    $("send-code").disabled = false;
  }
}

async function verify(event) {
  event.preventDefault();
  const answer = state.session.verification_method === "code"
    ? { code: $("code").value.trim() } : { date_of_birth: $("date-of-birth").value };
  if (!Object.values(answer)[0]) return views.showProblem("verify-problem", "Please fill this in first.");
  $("verify-submit").disabled = true;
  try {
    await api.verify(answer);
  } catch (error) {
    if (!(error instanceof PortalApiError) || error.code !== "verification_failed") throw error;
    const left = error.details?.attempts_left;
    if (left === 0) return views.showEnd("invitation_locked");
    return views.showProblem("verify-problem",
      `That did not match. ${left === 1 ? "1 attempt" : `${left} attempts`} left.`);
  } finally {
    $("verify-submit").disabled = false;
  }
  const bundle = await api.keyBundle();
  state.recipients = await verifiedRecipients(bundle.recipients, state.link.commitment);
  state.note = await openNote(bundle.sealed_note, state.link.secret, state.link.commitment);
  views.showNote(state.note.text);
  views.renderScopes();
  views.show("consent");
}

async function agree(event) {
  event.preventDefault();
  let consent;
  try {
    consent = await consentRecord(views.chosenScopes(), $("typed-name").value);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    return views.showProblem("consent-problem", error.message.startsWith("consent")
      ? "Please tick the first box: it is needed to send your photos." : "Please type your full name.");
  }
  $("consent-submit").disabled = true;
  await api.recordConsent(consent.record.id, consent.sha256);
  state.consent = consent.record;
  $("uploads-left").textContent = views.plural(state.uploadsLeft);
  views.show("capture");
}

function addPhoto(blob, capturedAt) {
  if (state.photos.length >= state.uploadsLeft) {
    return views.showProblem("capture-problem", `You can send at most ${views.plural(state.uploadsLeft)}.`);
  }
  state.photos.push({ blob, capturedAt });
  renderPhotos();
}

function renderPhotos() {
  views.renderPreviews(state.photos, (index) => {
    state.photos.splice(index, 1);
    renderPhotos();
  });
  views.showProblem("capture-problem", null);
  $("send").disabled = state.photos.length === 0;
  $("send").textContent = state.photos.length ? `Send ${views.plural(state.photos.length)}` : "Send photos";
}

async function openCamera() {
  try {
    await startCamera($("viewfinder"));
    $("camera").hidden = false;
  } catch {
    views.showProblem("capture-problem", "The camera could not be opened. You can choose photos instead.");
  }
}

async function takePhoto() {
  addPhoto(await snapshot($("viewfinder")), new Date().toISOString());
}

function closeCamera() {
  stopCamera($("viewfinder"));
  $("camera").hidden = true;
}

async function pick(event) {
  const input = event.target;
  const files = [...input.files];
  input.value = "";
  for (const file of files) {
    try {
      addPhoto(await reencode(file), undefined);
    } catch {
      views.showProblem("capture-problem", "One of the files is not a photo this page can read.");
    }
  }
}

async function send() {
  closeCamera();
  const photos = state.photos;
  views.show("sending");
  const sender = await registerSender(api);
  const uploads = [];
  for (const photo of photos) {
    uploads.push(await prepareUpload(photo.blob, {
      sender, recipients: state.recipients, consent: state.consent, capturedAt: photo.capturedAt,
      given: state.note.clinical, token: api.token,
      onProgress: progress,
    }));
  }
  release();
  const total = uploads.reduce((sum, upload) => sum + upload.size, 0);
  state.progress = { total, done: 0, finished: 0, count: uploads.length };
  views.showProgress(0, total, 0, uploads.length);
  for (const upload of uploads) {
    await untilSent(upload);
    state.progress.finished += upload.size;
    state.progress.done += 1;
  }
  views.show("done");
}

function progress(sent) {
  const { total, done, finished, count } = state.progress;
  views.showProgress(finished + sent, total, done, count);
}

/** Upload, and after a dropped connection offer to resume from where the relay is. */
async function untilSent(upload) {
  for (;;) {
    try {
      await upload.start();
      views.showProblem("sending-problem", null);
      return;
    } catch (error) {
      if (!(error instanceof PortalApiError) || (error.code !== "network_error" && error.status < 500)) throw error;
      views.showProblem("sending-problem", "The connection was lost. Your photos are safe on this phone; tap Try again.");
      $("retry").hidden = false;
      await new Promise((resolve) => $("retry").addEventListener("click", resolve, { once: true }));
      $("retry").hidden = true;
    }
  }
}

function guarded(step) {
  return (event) => step(event).catch(fail);
}

$("send-code").addEventListener("click", guarded(askForCode));
$("verify-form").addEventListener("submit", guarded(verify));
$("consent-form").addEventListener("submit", guarded(agree));
$("open-camera").addEventListener("click", guarded(openCamera));
$("shutter").addEventListener("click", guarded(takePhoto));
$("close-camera").addEventListener("click", closeCamera);
$("picker").addEventListener("change", guarded(pick));
$("send").addEventListener("click", guarded(send));
window.addEventListener("pagehide", () => stopCamera($("viewfinder")));
open().catch(fail);

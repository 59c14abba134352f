// What the patient sees: one section of portal.html at a time (body[data-step] names it), the
// end pages' wording, and the small pieces of DOM the steps fill in. No innerHTML: text only.

import { SCOPES } from "./consent.js";

const $ = (id) => document.getElementById(id);

/** End pages: what happened, and what to do next, with nothing about the invitation itself. */
export const END_PAGES = Object.freeze({
  invitation_not_found: ["This link does not work",
    "Check that you opened the whole link from your message. If it still does not work, ask your care team to send you a new link."],
  link_incomplete: ["Open the link from your message again",
    "This page needs the full link from the message you received. Open it again from that message."],
  invitation_expired: ["This link has expired",
    "Links work for a limited time. Ask your care team to send you a new link."],
  invitation_used_up: ["This link has already been used",
    "The photos this link allows have been sent. If you need to send more, ask your care team for a new link."],
  invitation_revoked: ["This link is no longer active",
    "Your care team has withdrawn it. Contact them if you still need to send photos."],
  invitation_locked: ["This link is locked",
    "There were too many attempts to confirm who you are. Your care team has been told; contact them for a new link."],
  keys_mismatch: ["Nothing was sent",
    "This page could not confirm who your photos would go to, so it stopped before sending anything. Please contact your care team."],
  session_ended: ["Your session has ended",
    "For your privacy, the page stops after a while without activity. Open the link from your message again."],
  problem: ["Something went wrong",
    "Check your internet connection, then open the link from your message again. If it keeps happening, contact your care team."],
});
const END_CODES = { unauthenticated: "session_ended", invalid_token: "session_ended", session_expired: "session_ended" };

export function endCodeFor(errorCode) {
  if (Object.hasOwn(END_PAGES, errorCode)) return errorCode;
  return END_CODES[errorCode] ?? "problem";
}

export function show(step) {
  for (const section of document.querySelectorAll("section[data-view]")) {
    section.hidden = section.dataset.view !== step;
  }
  document.body.dataset.step = step;
  window.scrollTo(0, 0);
}

/** The end page for an error code (from the relay or the page). */
export function showEnd(errorCode) {
  const code = endCodeFor(errorCode);
  const [title, text] = END_PAGES[code];
  $("end-title").textContent = title;
  $("end-text").textContent = text;
  document.body.dataset.end = code;
  show("end");
}

export function showProblem(id, text) {
  const element = $(id);
  element.textContent = text ?? "";
  element.hidden = !text;
}

export function showVerification(method) {
  for (const part of document.querySelectorAll("[data-method]")) part.hidden = part.dataset.method !== method;
  show("verify");
}

export function showNote(text) {
  if (!text) return;
  $("note-text").textContent = text;
  $("note").hidden = false;
}

/** The consent checkboxes; the required one says so. */
export function renderScopes() {
  const list = $("scopes");
  list.replaceChildren(...SCOPES.map(({ scope, required, wording }) => {
    const item = document.createElement("li");
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.name = "scope";
    box.value = scope;
    box.id = `scope-${scope}`;
    const text = document.createElement("span");
    text.textContent = required ? `${wording} (required)` : `${wording} (optional)`;
    label.append(box, text);
    item.append(label);
    return item;
  }));
}

export function chosenScopes() {
  return [...document.querySelectorAll('input[name="scope"]:checked')].map((box) => box.value);
}

export function plural(count) {
  return count === 1 ? "1 photo" : `${count} photos`;
}

/** The previews of `photos` (each `{blob}`), from object URLs revoked once shown or removed. */
export function renderPreviews(photos, onRemove) {
  const list = $("previews");
  for (const image of list.querySelectorAll("img")) URL.revokeObjectURL(image.src);
  list.replaceChildren(...photos.map((photo, index) => {
    const item = document.createElement("li");
    const image = document.createElement("img");
    image.alt = `Photo ${index + 1}`;
    image.addEventListener("load", () => URL.revokeObjectURL(image.src), { once: true });
    image.src = URL.createObjectURL(photo.blob);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary";
    remove.textContent = "Remove";
    remove.addEventListener("click", () => onRemove(index));
    item.append(image, remove);
    return item;
  }));
}

export function clearPreviews() {
  const list = $("previews");
  for (const image of list.querySelectorAll("img")) URL.revokeObjectURL(image.src);
  list.replaceChildren();
}

export function showProgress(sent, total, done, count) {
  $("progress").value = total === 0 ? 0 : Math.floor((100 * sent) / total);
  $("progress-text").textContent = `Sending photo ${Math.min(done + 1, count)} of ${count}…`;
}

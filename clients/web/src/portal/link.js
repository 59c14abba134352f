// The invitation link, https://HOST/p/<invitation id>#<secret>.<commitment> (docs/portal.md):
// read once when the page opens, then the fragment is removed from the address bar (and so
// from history) with history.replaceState. The secret stays in this page's memory only.

import { decode } from "./base64url.js";

const PATH = /^\/p\/([A-Za-z0-9_-]{1,64})$/;
const FRAGMENT = /^#([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{43})$/;

/** What the link carries: `{invitationId, secret, commitment}` (both base64url text), or null
 * when the address is not a complete invitation link. */
export function parseLink(pathname, hash) {
  const path = PATH.exec(pathname);
  const fragment = FRAGMENT.exec(hash);
  if (!path || !fragment) return null;
  try {
    if (decode(fragment[1]).length !== 32 || decode(fragment[2]).length !== 32) return null;
  } catch {
    return null;
  }
  return Object.freeze({ invitationId: path[1], secret: fragment[1], commitment: fragment[2] });
}

/** Read the link from `location`, then drop its fragment from the address bar and history. */
export function takeLink(location = window.location, history = window.history) {
  const link = parseLink(location.pathname, location.hash);
  if (location.hash) history.replaceState(null, "", location.pathname);
  return link;
}

// The manifest of a photo the patient sends (docs/portal.md, "Consent"): the envelope's
// Manifest with the consent record and `"source": "patient_portal"` at its top level, encoded
// by the envelope's canonical encoder. Readers that know only the envelope's fields ignore them.

import { ClinicalMetadata, Manifest } from "../envelope/manifest.js";

export const SOURCE = "patient_portal";
const consents = new WeakMap();

export class PortalManifest extends Manifest {
  /** `consent` is the record from consent.js; `capturedAt` an RFC 3339 UTC time or undefined;
   * `given` the clinician's references from the sealed note (note.js), camelCase. */
  constructor(contentType, consent, capturedAt = undefined, given = {}) {
    super(contentType, new ClinicalMetadata({ ...given, consentRef: consent.id, capturedAt }));
    consents.set(this, consent);
  }

  toJson() {
    return { ...super.toJson(), consent: consents.get(this), source: SOURCE };
  }
}

"""Whether the manifest's consent reference allows filing the image for treatment."""

from __future__ import annotations

from typing import Any

from relay_client.envelope import ClinicalMetadata, Manifest

from relay_emr_adapter.config import ConsentCheck
from relay_emr_adapter.emr_client import EmrClient
from relay_emr_adapter.errors import Refused

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


async def check_consent(manifest: Manifest, patient_submitted: bool, patient_id: str, emr: EmrClient,
                        mode: ConsentCheck) -> None:
    """``Refused("consent_missing")`` unless the consent allows treatment use. A patient's photo
    from the portal carries its consent sealed in the manifest (docs/portal.md, "Consent"): it
    counts when it is the one ``consent_ref`` names and its scopes include ``treatment``. Otherwise,
    with ``emr``, the EMR's Consent is active, for this patient, of scope ``treatment`` (or permits
    purpose ``TREAT``), and does not deny."""
    clinical = manifest.clinical or ClinicalMetadata()
    if clinical.consent_ref is None:
        raise Refused("consent_missing", "no_consent_ref")
    sealed = manifest.consent
    if patient_submitted and sealed is not None and sealed.id == clinical.consent_ref:
        if "treatment" not in sealed.scopes:
            raise Refused("consent_missing", "consent_not_for_treatment")
        return
    if mode is ConsentCheck.REFERENCE:
        return
    consent = await emr.read_consent(clinical.consent_ref)
    if consent is None:
        raise Refused("consent_missing", "consent_not_found")
    if consent.get("status") != "active":
        raise Refused("consent_missing", "consent_not_active")
    if (consent.get("patient") or {}).get("reference") != f"Patient/{patient_id}":
        raise Refused("consent_missing", "consent_other_patient")
    provision = consent.get("provision") or {}
    if provision.get("type") == "deny" or not _allows_treatment(consent, provision):
        raise Refused("consent_missing", "consent_not_for_treatment")


def _codes(concepts: list[dict[str, Any]], system: str) -> set[str]:
    return {coding.get("code") for concept in concepts for coding in concept.get("coding", [])
            if coding.get("system") == system}


def _allows_treatment(consent: dict[str, Any], provision: dict[str, Any]) -> bool:
    scope = consent.get("scope") or {}
    if "treatment" in _codes([scope], CONSENT_SCOPE):
        return True
    purposes = {coding.get("code") for coding in provision.get("purpose", []) if coding.get("system") == ACT_REASON}
    return "TREAT" in purposes

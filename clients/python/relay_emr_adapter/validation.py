"""The adapter validates what it is about to file against the FHIR models before the EMR sees
it. fhir.resources 8 ships R4B, which is R4 for every resource used here (Bundle, Binary,
Media, DocumentReference)."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from relay_emr_adapter.errors import Refused


def validate_bundle(bundle: dict[str, Any]) -> None:
    try:
        Bundle.model_validate(bundle)
    except ValidationError:
        raise Refused("validation_failed", "local_validation") from None

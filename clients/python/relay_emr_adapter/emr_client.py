"""The FHIR REST subset the adapter uses: find a Patient by identifier (or read it by id), read a
Consent, POST a transaction Bundle. Every call carries the SMART token; 408, 429, 5xx, timeouts
and dropped connections are retried with backoff (``Transient`` once the attempts are spent);
any other 4xx is permanent (``Refused``, with the status and the OperationOutcome's issue code,
never its text, which may quote clinical data)."""

from __future__ import annotations

import json as json_module
from typing import Any
from urllib.parse import quote

import aiohttp

from relay_emr_adapter.backoff import Backoff
from relay_emr_adapter.errors import Refused, Transient
from relay_emr_adapter.smart_auth import SmartToken

FHIR_JSON = "application/fhir+json"
TRANSIENT_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


class EmrClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: SmartToken, backoff: Backoff, *,
                 timeout: float, patient_identifier_system: str | None = None) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._token = token
        self._backoff = backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._identifier_system = patient_identifier_system

    async def find_patient(self, patient_ref: str) -> str:
        """The id of the one Patient ``patient_ref`` names: ``Patient/<id>``, ``system|value``,
        or a bare MRN (in ``patient_identifier_system`` when configured)."""
        if patient_ref.startswith("Patient/"):
            status, body = await self._call("GET", f"/Patient/{quote(patient_ref[8:], safe='')}", allow=(404, 410),
                                            refusal="patient_not_found")
            if status != 200 or body.get("resourceType") != "Patient":
                raise Refused("patient_not_found", f"emr_http_{status}")
            return str(body["id"])
        identifier = patient_ref if "|" in patient_ref or not self._identifier_system else (
            f"{self._identifier_system}|{patient_ref}")
        status, body = await self._call("GET", f"/Patient?identifier={quote(identifier, safe='|')}",
                                        refusal="patient_not_found")
        matches = [entry["resource"] for entry in body.get("entry", [])
                   if entry.get("resource", {}).get("resourceType") == "Patient"
                   and entry.get("search", {}).get("mode", "match") == "match"]
        if len(matches) != 1:
            raise Refused("patient_not_found", "no_match" if not matches else "ambiguous")
        return str(matches[0]["id"])

    async def read_consent(self, consent_ref: str) -> dict[str, Any] | None:
        """The Consent ``Consent/<id>`` names, or None when the EMR does not hold it."""
        if not consent_ref.startswith("Consent/") or "/" in consent_ref[8:]:
            return None
        status, body = await self._call("GET", f"/Consent/{quote(consent_ref[8:], safe='')}", allow=(404, 410),
                                            refusal="consent_missing")
        return body if status == 200 and body.get("resourceType") == "Consent" else None

    async def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction Bundle; its transaction-response. A 4xx is ``validation_failed``."""
        return (await self._call("POST", "", json=bundle, refusal="validation_failed"))[1]

    async def _call(self, method: str, path: str, *, json: Any = None, allow: tuple[int, ...] = (),
                    refusal: str = "other") -> tuple[int, dict[str, Any]]:
        failures = 0
        refreshed = False
        while True:
            try:
                return await self._once(method, path, json, allow, refusal)
            except _Unauthorized as unauthorized:
                self._token.forget(unauthorized.token)
                if not refreshed:
                    refreshed = True
                    continue
                error: Transient = Transient("emr_http_401")
            except Transient as transient:
                error = transient
            failures += 1
            if failures >= self._backoff.attempts:
                raise error
            await self._backoff.wait(failures, error.retry_after)

    async def _once(self, method: str, path: str, json: Any, allow: tuple[int, ...],
                    refusal: str) -> tuple[int, dict[str, Any]]:
        token = await self._token.get()
        headers = {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON}
        if json is not None:
            headers["Content-Type"] = FHIR_JSON
        try:
            async with self._session.request(method, self._base + path, json=json, headers=headers,
                                             timeout=self._timeout) as response:
                status = response.status
                raw = await response.read()
                retry_after = response.headers.get("Retry-After", "")
        except (aiohttp.ClientError, TimeoutError):
            raise Transient("emr_unreachable") from None
        body = _json(raw)
        if status == 401:
            raise _Unauthorized(token)
        if status in TRANSIENT_STATUSES or status == 403:
            raise Transient(f"emr_http_{status}", float(retry_after) if retry_after.isdigit() else None)
        if 200 <= status < 300 or status in allow:
            return status, body if isinstance(body, dict) else {}
        raise Refused(refusal, f"emr_http_{status}" + _issue_code(body))


def _json(raw: bytes) -> Any:
    try:
        return json_module.loads(raw) if raw else {}
    except ValueError:
        return {}


class _Unauthorized(Exception):
    def __init__(self, token: str) -> None:
        self.token = token


def _issue_code(body: Any) -> str:
    """``:<code>`` of an OperationOutcome's first issue (a FHIR code such as ``not-found``)."""
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues = body.get("issue") or [{}]
        code = issues[0].get("code") if isinstance(issues[0], dict) else None
        if isinstance(code, str) and code.replace("-", "").isalnum() and len(code) <= 32:
            return f":{code}"
    return ""

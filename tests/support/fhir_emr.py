"""A stand-in EMR on 127.0.0.1 that speaks the FHIR R4 REST subset the adapter uses, and checks
what it receives the way a strict EMR would: a SMART Backend Services token endpoint that
verifies private_key_jwt assertions (signature, aud, exp, jti once), bearer tokens on every
FHIR call, Patient search by identifier, reads, and transaction Bundles with conditional create
(``ifNoneExist``), each validated with fhir.resources (R4B, R4-compatible for these resources)
and with its references resolved, all or nothing. It can be switched down (503) or to hang."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from aiohttp import web
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from tests.support.harness import free_port

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FHIR_JSON = "application/fhir+json"


def outcome(status: int, code: str, text: str) -> web.Response:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
    return web.json_response(body, status=status, content_type=FHIR_JSON)


class StandInEmr:
    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.fhir_base_url = self.url + "/fhir"
        self.token_url = self.url + "/token"
        self.clients: dict[str, Any] = {}
        self.store: dict[str, dict[str, dict[str, Any]]] = {}
        self.mode = "up"
        self.hang_after_commit = False
        self.committed = asyncio.Event()
        self.transactions: list[int] = []
        self.refused_tokens = 0
        self._tokens: set[str] = set()
        self._jtis: set[str] = set()
        self._ids = itertools.count(1)

    # -- what tests set up and read --------------------------------------------------------
    def register_client(self, client_id: str, public_key: Any) -> None:
        self.clients[client_id] = public_key

    def add(self, resource: dict[str, Any]) -> str:
        resource = dict(resource, id=str(next(self._ids)))
        self.store.setdefault(resource["resourceType"], {})[resource["id"]] = resource
        return f"{resource['resourceType']}/{resource['id']}"

    def add_patient(self, system: str, value: str) -> str:
        return self.add({"resourceType": "Patient", "identifier": [{"system": system, "value": value}]})

    def add_consent(self, patient: str, *, scope: str = "treatment", status: str = "active") -> str:
        return self.add({
            "resourceType": "Consent", "status": status, "patient": {"reference": patient},
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": scope}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        })

    def resources(self, kind: str) -> list[dict[str, Any]]:
        return list(self.store.get(kind, {}).values())

    def binary_data(self, reference: str) -> bytes:
        kind, _, resource_id = reference.partition("/")
        return base64.b64decode(self.store[kind][resource_id]["data"])

    # -- the HTTP side ----------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._availability])
        app.router.add_post("/token", self._token)
        app.router.add_get("/fhir/Patient", self._search_patients)
        app.router.add_get("/fhir/{kind}/{id}", self._read)
        app.router.add_post("/fhir", self._transaction)
        return app

    @web.middleware
    async def _availability(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.mode == "down":
            return outcome(503, "transient", "maintenance")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if request.path.startswith("/fhir"):
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if token not in self._tokens:
                self.refused_tokens += 1
                return outcome(401, "login", "a valid bearer token is required")
        return await handler(request)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != ASSERTION_TYPE:
            return web.json_response({"error": "invalid_request"}, status=400)
        assertion = str(form.get("client_assertion", ""))
        try:
            client_id = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
            key = self.clients[client_id]
            claims = jwt.decode(assertion, key, algorithms=["ES384", "ES256", "RS384", "EdDSA"],
                                audience=self.token_url, issuer=client_id,
                                options={"require": ["iss", "sub", "aud", "exp", "jti"], "verify_exp": False})
        except (jwt.PyJWTError, KeyError):
            return web.json_response({"error": "invalid_client"}, status=401)
        expires = datetime.fromtimestamp(claims["exp"], UTC)
        now = self.now()
        if claims["sub"] != client_id or expires < now - timedelta(seconds=60) or (
                expires - now > timedelta(minutes=5, seconds=60)) or claims["jti"] in self._jtis:
            return web.json_response({"error": "invalid_client"}, status=401)
        self._jtis.add(claims["jti"])
        token = secrets.token_urlsafe(24)
        self._tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "bearer", "expires_in": 300,
                                  "scope": form.get("scope", "")})

    async def _search_patients(self, request: web.Request) -> web.Response:
        system, _, value = request.query.get("identifier", "").rpartition("|")
        matches = [patient for patient in self.resources("Patient") if any(
            identifier.get("value") == value and (not system or identifier.get("system") == system)
            for identifier in patient.get("identifier", []))]
        return web.json_response({"resourceType": "Bundle", "type": "searchset", "total": len(matches),
                                  "entry": [{"resource": p, "search": {"mode": "match"}} for p in matches]},
                                 content_type=FHIR_JSON)

    async def _read(self, request: web.Request) -> web.Response:
        found = self.store.get(request.match_info["kind"], {}).get(request.match_info["id"])
        if found is None:
            return outcome(404, "not-found", "no such resource")
        return web.json_response(found, content_type=FHIR_JSON)

    async def _transaction(self, request: web.Request) -> web.Response:
        try:
            bundle = json.loads(await request.read())
            Bundle.model_validate(bundle)
        except (ValueError, ValidationError) as error:
            return outcome(400, "structure", f"invalid Bundle: {str(error)[:200]}")
        if bundle.get("type") != "transaction":
            return outcome(400, "invalid", "only transaction Bundles are accepted")
        staged: dict[str, dict[str, dict[str, Any]]] = {}
        resolved: dict[str, str] = {}
        responses = []
        for entry in bundle["entry"]:
            kind = entry["resource"]["resourceType"]
            if entry["request"] != {**entry["request"], "method": "POST", "url": kind}:
                return outcome(400, "not-supported", "only POST of a resource to its type")
            existing = self._conditional_match(kind, entry["request"].get("ifNoneExist"), staged)
            if existing is not None:
                resolved[entry["fullUrl"]] = f"{kind}/{existing['id']}"
                responses.append({"response": {"status": "200 OK", "location": f"{kind}/{existing['id']}/_history/1"}})
                continue
            resource = dict(entry["resource"], id=str(next(self._ids)), meta={
                **entry["resource"].get("meta", {}), "versionId": "1"})
            staged.setdefault(kind, {})[resource["id"]] = resource
            resolved[entry["fullUrl"]] = f"{kind}/{resource['id']}"
            responses.append({"response": {"status": "201 Created", "location": f"{kind}/{resource['id']}/_history/1"}})
        for kind, created in staged.items():
            for resource_id, resource in created.items():
                created[resource_id] = _replace(resource, resolved)
                missing = [ref for ref in _references(created[resource_id]) if not self._exists(ref, staged)]
                if missing:
                    return outcome(422, "processing", "a referenced resource does not exist")
        for kind, created in staged.items():
            self.store.setdefault(kind, {}).update(created)
        self.transactions.append(len(bundle["entry"]))
        self.committed.set()
        if self.hang_after_commit:
            await asyncio.sleep(3600)
        return web.json_response({"resourceType": "Bundle", "type": "transaction-response", "entry": responses},
                                 content_type=FHIR_JSON)

    def _conditional_match(self, kind: str, condition: str | None, staged: dict[str, Any]) -> dict[str, Any] | None:
        if not condition:
            return None
        name, _, token = condition.partition("=")
        system, _, value = token.rpartition("|")
        for resource in [*self.resources(kind), *staged.get(kind, {}).values()]:
            if name == "identifier" and {"system": system, "value": value} in resource.get("identifier", []):
                return resource
            if name == "_tag" and {"system": system, "code": value} in resource.get("meta", {}).get("tag", []):
                return resource
        return None

    def _exists(self, reference: str, staged: dict[str, Any]) -> bool:
        kind, _, resource_id = reference.partition("/")
        return resource_id in self.store.get(kind, {}) or resource_id in staged.get(kind, {})


def _replace(value: Any, resolved: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: _replace(item, resolved) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace(item, resolved) for item in value]
    return resolved.get(value, value) if isinstance(value, str) else value


def _references(value: Any) -> list[str]:
    """Every literal ``reference`` and Attachment ``url`` naming a local resource."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("reference", "url") and isinstance(item, str) and item.count("/") == 1 and (
                    not item.startswith(("http", "urn:"))):
                found.append(item)
            else:
                found += _references(item)
    elif isinstance(value, list):
        for item in value:
            found += _references(item)
    return found


@contextlib.asynccontextmanager
async def stand_in_emr(now: Callable[[], datetime]) -> AsyncIterator[StandInEmr]:
    emr = StandInEmr(now)
    runner = web.AppRunner(emr.app(), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", emr.port).start()
    try:
        yield emr
    finally:
        emr.mode = "up"
        await runner.cleanup()

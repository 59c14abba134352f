"""The patient portal page (clients/web/src/portal, docs/portal.md "The page"), served by the
relay itself and driven in Debian's Chromium: its headers and the files it may load; the link's
fragment read once and dropped from the address bar; the key commitment checked before anything
is sealed; the care team's note opened; the consent's hash; photos captured from a (fake)
camera and picked photos re-encoded without their EXIF and GPS, orientation kept."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import ExifTags, Image, ImageOps
from playwright.async_api import Browser, Page, Request
from relay_client.envelope import ClinicalMetadata
from relay_client.invitations import PageNote, seal_note

from tests.conftest import SettingsFactory
from tests.support.browser import launch_chromium
from tests.support.clock import ManualClock
from tests.support.devices import DeviceKeys, b64url
from tests.support.harness import Relay, running_relay
from tests.test_security_headers import assert_secure, directives

FAKE_CAMERA = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")
INVITATION = "0123456789abcdef0123456789abcdef"
PORTAL = "/portal/assets/src/portal/"


def canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def commitment_of(bundle: list[dict[str, Any]]) -> str:
    """docs/portal.md: SHA-256 of the canonical JSON of the recipients' identity keys."""
    recipients = sorted(({"device_id": r["device_id"], "identity_key": r["identity_key"]} for r in bundle),
                        key=lambda r: r["device_id"])
    return b64url(hashlib.sha256(canonical({"recipients": recipients, "v": 1})).digest())


def key_bundle_entry(keys: DeviceKeys) -> dict[str, Any]:
    """What GET /api/v1/portal/recipients serves for one device."""
    return {"device_id": os.urandom(16).hex(), "identity_key": keys.identity_key,
            "encryption_key": keys.encryption_upload()}


@dataclass
class PortalTab:
    """The page in a fresh browser context, with every request it sent and what it logged."""

    page: Page
    requests: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def module(self, name: str, expression: str, argument: object = None) -> Any:
        """Evaluate ``expression`` (a function of the module and ``argument``) with one portal module."""
        return await self.page.evaluate(
            f"async ([url, argument]) => {{ const module = await import(url); return await ({expression})(module, argument); }}",
            [PORTAL + name, argument])

    async def step(self) -> str:
        await self.page.wait_for_function("() => document.body.dataset.step !== 'opening'")
        return str(await self.page.evaluate("document.body.dataset.step"))


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    async with launch_chromium(*FAKE_CAMERA) as browser:
        yield browser


@pytest.fixture
async def tab(chromium: Browser) -> AsyncIterator[PortalTab]:
    context = await chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = await context.new_page()
        opened = PortalTab(page)
        page.on("request", lambda request: opened.requests.append(request))
        page.on("console", lambda message: opened.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: opened.errors.append(str(error)))
        yield opened
    finally:
        await context.close()


async def test_the_page_and_its_modules_carry_the_security_headers(relay: Relay) -> None:
    page = await relay.call("GET", f"/p/{INVITATION}")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert '<script type="module" src="/portal/assets/src/portal/main.js">' in await page.text()
    for response in (page, await relay.call("GET", PORTAL + "main.js"), await relay.call("GET", PORTAL + "portal.css"),
                     await relay.call("GET", "/portal/assets/src/envelope/seal.js"),
                     await relay.call("GET", "/portal/assets/vendor/tus-js-client/tus.js"),
                     await relay.call("GET", "/portal/assets/vendor/@hpke/core/esm/mod.js")):
        assert response.status == 200, response.url
        assert_secure(response)
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        policy = directives(response.headers["Content-Security-Policy"])
        assert policy["script-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
    assert (await relay.call("GET", PORTAL + "main.js")).headers["Content-Type"].startswith("text/javascript")


@pytest.mark.parametrize("path", [
    "/portal/assets/package.json", "/portal/assets/test/tus-page.js", "/portal/assets/tools/vendor.mjs",
    "/portal/assets/node_modules/tus-js-client/package.json", "/portal/assets/src/portal/",
    "/portal/assets/src/portal/../../package.json", "/portal/assets/src/portal/%2e%2e/%2e%2e/package.json",
    "/portal/assets/vendor/@hpke/core/LICENSE", "/portal/assets/vendor/@hpke/core/esm/../../../../package.json",
    "/portal/assets/src/portal/portal.html", "/portal/assets/src/portal/missing.js", "/p/", "/p/a.b", "/p/" + "a" * 65,
])
async def test_nothing_outside_the_allow_list_is_served(relay: Relay, path: str) -> None:
    response = await relay.call("GET", path)
    assert response.status == 404, path
    assert_secure(response)
    body = await response.read()
    assert b"relay-web" not in body and b"tusTest" not in body


async def test_a_link_without_its_fragment_shows_what_to_do_and_loads_nothing_foreign(
        relay: Relay, tab: PortalTab) -> None:
    await tab.page.goto(f"{relay.url}/p/{INVITATION}")
    assert await tab.step() == "end"
    assert await tab.page.evaluate("document.body.dataset.end") == "link_incomplete"
    assert "Open the link from your message again" in await tab.page.inner_text("main")
    assert tab.requests, "the page loaded its modules"
    assert all(request.url.startswith(relay.url + "/") for request in tab.requests), \
        [request.url for request in tab.requests if not request.url.startswith(relay.url + "/")]
    assert not [request for request in tab.requests if request.url.startswith(relay.url + "/api/")], \
        "an incomplete link calls nothing"
    assert tab.errors == [], "the page logged errors (a CSP violation is one)"


async def test_the_link_is_parsed_and_its_fragment_dropped_from_the_address_bar(
        relay: Relay, tab: PortalTab) -> None:
    secret, commitment = b64url(os.urandom(32)), b64url(os.urandom(32))
    await tab.page.goto(f"{relay.url}/p/{INVITATION}")
    assert await tab.step() == "end"
    parsed = await tab.module("link.js", """(link, [secret, commitment]) => {
        const good = link.parseLink("/p/abc", `#${secret}.${commitment}`);
        history.replaceState(null, "", `/p/abc#${secret}.${commitment}`);
        const taken = link.takeLink();
        return {good, taken, href: location.href, length: history.length,
                short: link.parseLink("/p/abc", `#${secret}`), bad: link.parseLink("/x/abc", `#${secret}.${commitment}`),
                padded: link.parseLink("/p/abc", `#${secret.slice(0, 42)}=.${commitment}`)};
    }""", [secret, commitment])
    expected = {"invitationId": "abc", "secret": secret, "commitment": commitment}
    assert parsed["good"] == expected and parsed["taken"] == expected
    assert parsed["href"] == f"{relay.url}/p/abc", "the fragment left the address bar"
    assert secret not in await tab.page.evaluate("location.href + document.referrer")
    assert parsed["short"] is None and parsed["bad"] is None and parsed["padded"] is None


async def test_the_commitment_admits_the_committed_keys_and_refuses_swapped_ones(
        relay: Relay, tab: PortalTab) -> None:
    bundle = [key_bundle_entry(DeviceKeys()) for _ in range(3)]
    commitment = commitment_of(bundle)
    swapped = [dict(bundle[0], identity_key=DeviceKeys().identity_key), *bundle[1:]]
    impostor = DeviceKeys()
    resigned = [dict(bundle[0], encryption_key=impostor.encryption_upload()), *bundle[1:]]
    await tab.page.goto(f"{relay.url}/p/{INVITATION}")
    await tab.step()
    verdicts = await tab.module("commitment.js", """async (commitment, [bundle, expected, others]) => {
        const verdict = async (served) => {
            try {
                return (await commitment.verifiedRecipients(served, expected)).map((r) => r.deviceId);
            } catch (error) {
                return error.code;
            }
        };
        return {computed: await commitment.commitmentOf([...bundle].reverse()), good: await verdict(bundle),
                others: await Promise.all(others.map(verdict))};
    }""", [bundle, commitment, [swapped, resigned, bundle[:2], [], [*bundle, key_bundle_entry(DeviceKeys())]]])
    assert verdicts["computed"] == commitment, "the page and the clinician's client compute the same commitment"
    assert verdicts["good"] == [entry["device_id"] for entry in bundle]
    assert verdicts["others"] == ["keys_mismatch"] * 5


async def test_the_care_teams_note_opens_only_with_the_links_secret_and_commitment(
        relay: Relay, tab: PortalTab) -> None:
    secret, commitment = b64url(os.urandom(32)), b64url(os.urandom(32))
    note = b64url(seal_note(PageNote("Please photograph the wound on your left knee — twice.", ClinicalMetadata(
        patient_ref="Patient/42", laterality="left")), secret, commitment))
    await tab.page.goto(f"{relay.url}/p/{INVITATION}")
    await tab.step()
    opened = await tab.module("note.js", """(note, [sealed, secret, commitment, other]) => Promise.all([
        note.openNote(sealed, secret, commitment), note.openNote(sealed, other, commitment),
        note.openNote(sealed, secret, other), note.openNote(null, secret, commitment)])""",
        [note, secret, commitment, b64url(os.urandom(32))])
    nothing = {"text": None, "clinical": {}}
    assert opened == [{"text": "Please photograph the wound on your left knee — twice.",
                       "clinical": {"patientRef": "Patient/42", "laterality": "left"}}, nothing, nothing, nothing]


async def test_the_consent_hash_is_the_sha256_of_the_records_canonical_json(relay: Relay, tab: PortalTab) -> None:
    await tab.page.goto(f"{relay.url}/p/{INVITATION}")
    await tab.step()
    made = await tab.module("consent.js", """async (consent) => {
        const refused = [];
        for (const [scopes, name] of [[["teaching"], "Ada"], [["treatment"], "  "]]) {
            try { await consent.consentRecord(scopes, name); } catch (error) { refused.push(error.name); }
        }
        return {made: await consent.consentRecord(["deidentified_research", "treatment"], " Ada Lovelace "),
                text: consent.consentText(), refused};
    }""")
    record = made["made"]["record"]
    assert made["made"]["sha256"] == hashlib.sha256(canonical(record)).hexdigest()
    assert record["scopes"] == ["treatment", "deidentified_research"] and record["typed_name"] == "Ada Lovelace"
    assert record["text_sha256"] == hashlib.sha256(made["text"].encode()).hexdigest()
    assert len(record["id"]) == 32 and record["agreed_at"].endswith("Z")
    assert made["refused"] == ["RangeError", "RangeError"]


def jpeg_with_gps(width: int = 64, height: int = 32, orientation: int = 6) -> bytes:
    """A JPEG whose EXIF holds a GPS position, a camera name and an orientation: rotated 90° (6),
    a viewer shows it ``height`` wide and ``width`` tall."""
    image = Image.new("RGB", (width, height), (200, 30, 30))
    for x in range(width // 2):
        for y in range(height):
            image.putpixel((x, y), (30, 30, 200))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0),
        ExifTags.GPS.GPSLongitudeRef: "E", ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.0),
    }
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=95)
    return out.getvalue()


def assert_no_metadata(jpeg: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG"
    exif = image.getexif()
    assert not exif.get_ifd(ExifTags.IFD.GPSInfo), "GPS EXIF left"
    assert ExifTags.Base.Make not in exif and ExifTags.Base.Orientation not in exif
    assert b"PhoneMaker" not in jpeg and b"Exif\x00\x00" not in jpeg
    return image


async def test_a_picked_photo_loses_its_exif_and_gps_and_keeps_its_orientation(
        relay: Relay, tab: PortalTab) -> None:
    original = jpeg_with_gps()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo), "the test photo carries GPS"
    await tab.page.goto(f"{relay.url}/p/{INVITATION}")
    await tab.step()
    result = await tab.module("capture.js", """async (capture, data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const blob = await capture.reencode(new File([bytes], "IMG_0001.jpg", {type: "image/jpeg"}));
        const out = new Uint8Array(await blob.arrayBuffer());
        let binary = "";
        for (const byte of out) binary += String.fromCharCode(byte);
        return {type: blob.type, data: btoa(binary)};
    }""", base64.b64encode(original).decode())
    assert result["type"] == "image/jpeg"
    image = assert_no_metadata(base64.b64decode(result["data"]))
    assert image.size == (32, 64), "the EXIF orientation was applied to the pixels"
    shown = ImageOps.exif_transpose(Image.open(io.BytesIO(original))).convert("RGB")
    for point in ((16, 4), (16, 60)):
        expected, got = shown.getpixel(point), image.convert("RGB").getpixel(point)
        assert max(abs(a - b) for a, b in zip(expected, got, strict=True)) < 40, "turned as a viewer shows it"


async def test_the_rear_camera_is_asked_for_and_a_still_is_a_jpeg_in_memory(relay: Relay, tab: PortalTab) -> None:
    await tab.page.goto(f"{relay.url}/p/{INVITATION}")
    await tab.step()
    result = await tab.module("capture.js", """async (capture) => {
        const asked = [];
        const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
        navigator.mediaDevices.getUserMedia = (constraints) => { asked.push(constraints); return original(constraints); };
        const video = document.getElementById("viewfinder");
        await capture.startCamera(video);
        const blob = await capture.snapshot(video);
        capture.stopCamera(video);
        const out = new Uint8Array(await blob.arrayBuffer());
        let binary = "";
        for (const byte of out) binary += String.fromCharCode(byte);
        return {asked, type: blob.type, data: btoa(binary), live: video.srcObject !== null};
    }""")
    assert result["asked"][0]["video"]["facingMode"] == {"ideal": "environment"}
    assert result["asked"][0]["audio"] is False
    assert result["type"] == "image/jpeg" and result["live"] is False
    image = assert_no_metadata(base64.b64decode(result["data"]))
    assert image.width >= 320 and image.height >= 240
    storage = await tab.page.evaluate("[localStorage.length, sessionStorage.length]")
    assert storage == [0, 0], "nothing is written to the browser's storage"


async def test_a_relay_without_the_page_says_so(make_settings: SettingsFactory, clock: ManualClock,
                                                tmp_path: Path) -> None:
    async with running_relay(make_settings(web_root=tmp_path / "no-web"), clock) as relay:
        page = await relay.call("GET", f"/p/{INVITATION}")
        assert page.status == 503 and (await page.json())["error"]["code"] == "portal_page_unavailable"
        assert_secure(page)
        assert (await relay.call("GET", PORTAL + "main.js")).status == 404
        assert (await relay.call("GET", "/healthz")).status == 200, "relay serve still serves everything else"

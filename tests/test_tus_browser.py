"""The standard browser tus client, tus-js-client (vendored, clients/web/vendor), uploads a sealed
envelope to the relay unchanged, in Debian's Chromium under the relay's CSP: configured as
docs/uploads.md says, it uploads in several PATCHes, resumes an interrupted upload from the
relay's offset, and a file name in its metadata is refused. The page reaches the relay through
the test web server's same-origin proxy (the relay sends no CORS headers)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from relay_client.envelope import open_bytes

from tests.support.browser import OpenedPage, WebSite, launch_chromium, open_page, serve_web
from tests.support.chat import conversation
from tests.support.envelopes import Member, download, keyring_of, member, seal_photo
from tests.support.harness import Relay
from tests.support.upload_proxy import UPLOADS, ProxiedRequest

PAGE = "/test/tus.html"
CHUNK = 64 * 1024


@dataclass
class Scene:
    """Alice's device sealed a photo to Bob's device; the page uploads it for her, naming their
    conversation ``room``."""

    relay: Relay
    site: WebSite
    page: OpenedPage
    alice: Member
    bob: Member
    room: str
    photo: bytes = field(repr=False)
    envelope: bytes = field(repr=False)

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"envelopeUrl": self.site.publish(self.envelope), "endpoint": self.site.url + UPLOADS,
                "token": self.alice.token, "sha256": hashlib.sha256(self.envelope).hexdigest(),
                "conversation": self.room, "chunkSize": CHUNK, **extra}

    async def call(self, function: str, options: dict[str, Any]) -> dict[str, Any]:
        answer = await self.page.evaluate(f"options => window.tusTest.{function}(options)", options)
        assert isinstance(answer, dict)
        return answer

    async def bob_opens(self, upload_url: str) -> bytes:
        assert upload_url.startswith(self.site.url + UPLOADS + "/"), "the upload URL is on the page's origin"
        received = await (await download(self.relay, self.bob.token, upload_url.rsplit("/", 1)[1])).read()
        assert received == self.envelope
        opened = await open_bytes(received, keyring_of(self.bob.device).opening_keys(),
                                  keyring_of(self.alice.device).identity_key)
        return opened.content

    def requests(self, method: str) -> list[ProxiedRequest]:
        return [request for request in self.site.proxied if request.method == method]


@pytest.fixture
async def scene(relay: Relay) -> AsyncIterator[Scene]:
    alice, bob = await member(relay, "alice"), await member(relay, "bob")
    room = await conversation(relay, alice, [bob])
    photo = b"\xff\xd8\xff\xe0" + os.urandom(300_000)
    envelope = await seal_photo(alice.device, [bob.device], photo)
    async with (serve_web(api=relay.url) as site, launch_chromium() as browser,
                open_page(browser, site.url + PAGE, ready="tusTest") as page):
        yield Scene(relay, site, page, alice, bob, room, photo, envelope)
        assert page.errors == [], "the page logged errors (a CSP violation is one)"


async def test_tus_js_client_uploads_a_sealed_photo_that_the_recipient_opens(scene: Scene) -> None:
    answer = await scene.call("upload", scene.options())
    assert "error" not in answer, answer
    assert await scene.bob_opens(answer["result"]) == scene.photo

    offsets = list(range(0, len(scene.envelope), CHUNK))
    assert len(offsets) > 1
    assert [(request.method, request.upload_offset, request.status) for request in scene.site.proxied] == [
        ("POST", None, 201), *[("PATCH", offset, 204) for offset in offsets]]


async def test_an_interrupted_upload_resumes_from_the_relays_offset(scene: Scene) -> None:
    answer = await scene.call("uploadInterrupted", scene.options())
    assert "error" not in answer, answer
    result = answer["result"]
    assert result["abortedAt"] == CHUNK
    assert result["remembered"] == 0, "a finished upload is forgotten (removeFingerprintOnSuccess)"
    assert await scene.bob_opens(result["url"]) == scene.photo

    methods = [request.method for request in scene.site.proxied]
    assert methods.count("POST") == 1, "the second attempt resumed the upload instead of creating another"
    resumed_at = methods.index("HEAD")
    assert methods[:resumed_at] == ["POST", "PATCH"], "aborted after the first PATCH"
    head = scene.site.proxied[resumed_at]
    assert (head.path, head.status) == (result["url"].removeprefix(scene.site.url), 200)
    patches = scene.requests("PATCH")
    assert len(patches) > 1
    assert [request.upload_offset for request in patches] == list(range(0, len(scene.envelope), CHUNK))


async def test_a_file_name_in_the_metadata_is_refused(scene: Scene) -> None:
    answer = await scene.call("upload", scene.options(extraMetadata={"filename": "photo.jpg"}))
    assert answer["error"]["status"] == 422, answer
    assert '"metadata_refused"' in answer["error"]["body"]
    assert [(request.method, request.status) for request in scene.site.proxied] == [("POST", 422)]
    assert [error for error in scene.page.errors if "status of 422" not in error] == []
    scene.page.errors.clear()
    waiting = await scene.relay.call("GET", "/api/v1/blobs", token=scene.bob.token)
    assert (await waiting.json())["blobs"] == []

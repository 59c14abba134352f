"""Debian's Chromium driven by Playwright, and clients/web served from 127.0.0.1 (a secure
context) under exactly the security headers the relay sends, so every page runs under the
relay's strict CSP (no inline script, no third-party origin).

    async with serve_web() as site, launch_chromium() as browser:
        async with open_page(browser, site.url + "/test/envelope.html", ready="envelopeTest") as page:
            url = site.publish(data)                      # bytes the page can fetch
            await page.evaluate("...fetch(url)... POST to site.upload_url('sealed')...")
            site.received["sealed"]                       # bytes the page posted

``serve_web(api=relay.url)`` also proxies the relay's tus endpoint (``/api/v1/uploads``, see
tests/support/upload_proxy.py), so a page uploads to its own origin; ``site.proxied`` lists
what passed.

Needs `apt-get install chromium` (or RELAY_TEST_CHROMIUM naming another Chromium binary) and
`npm ci` in clients/web, which vendors the pinned @hpke/core and tus-js-client ES modules into
clients/web/vendor/; never `playwright install`. Extra Chromium switches go to ``launch_chromium``
(e.g. ``--use-fake-device-for-media-stream``, ``--use-fake-ui-for-media-stream`` for a fake camera).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

from relay.http.headers import NO_STORE, security_headers
from tests.support.harness import free_port
from tests.support.upload_proxy import ProxiedRequest, add_upload_proxy

WEB_ROOT = Path(__file__).resolve().parents[2] / "clients" / "web"
CHROMIUM = os.environ.get("RELAY_TEST_CHROMIUM", "/usr/bin/chromium")
TEST_PREFIX = "/_test"
MAX_UPLOAD = 256 * 1024 * 1024
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}


@dataclass
class WebSite:
    """clients/web on a local port, plus test-only routes under /_test: bytes published for the
    page to fetch, and what the page uploaded."""

    url: str
    published: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    received: dict[str, bytes] = field(default_factory=dict)
    proxied: list[ProxiedRequest] = field(default_factory=list)

    def publish(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve ``data`` at a fresh URL (absolute) for the page to fetch."""
        name = secrets.token_hex(8)
        self.published[name] = (data, content_type)
        return f"{self.url}{TEST_PREFIX}/blob/{name}"

    def upload_url(self, name: str) -> str:
        """Where the page POSTs bytes that then appear in ``received[name]``."""
        return f"{self.url}{TEST_PREFIX}/upload/{name}"


def _web_app(root: Path, site: WebSite, api: str | None = None) -> web.Application:
    headers = security_headers(hsts_max_age=None)

    @web.middleware
    async def secure(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(headers)
        response.headers.setdefault("Cache-Control", NO_STORE)
        return response

    async def published(request: web.Request) -> web.Response:
        found = site.published.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=found[0], content_type=found[1])

    async def upload(request: web.Request) -> web.Response:
        site.received[request.match_info["name"]] = await request.read()
        return web.Response(status=204)

    async def static(request: web.Request) -> web.StreamResponse:
        path = (root / request.match_info["path"]).resolve()
        if not path.is_relative_to(root) or not path.is_file() or "node_modules" in path.relative_to(root).parts:
            return web.Response(status=404, text="not found")
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        return web.FileResponse(path, headers={"Content-Type": content_type})

    app = web.Application(middlewares=[secure], client_max_size=MAX_UPLOAD)
    app.router.add_get(TEST_PREFIX + "/blob/{name}", published)
    app.router.add_post(TEST_PREFIX + "/upload/{name}", upload)
    if api is not None:
        add_upload_proxy(app, api, site.proxied)
    app.router.add_get("/{path:.*}", static)
    return app


@contextlib.asynccontextmanager
async def serve_web(root: Path = WEB_ROOT, *, api: str | None = None) -> AsyncIterator[WebSite]:
    """Serve ``root`` (clients/web) on http://127.0.0.1:PORT with the relay's security headers;
    with ``api`` (the relay's base URL), proxy its tus endpoint on the same origin."""
    root = root.resolve()
    if not (root / "vendor").is_dir():
        raise RuntimeError(f"{root / 'vendor'} is missing: run `npm ci` in {root} first")
    port = free_port()
    site = WebSite(f"http://127.0.0.1:{port}")
    runner = web.AppRunner(_web_app(root, site, api), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield site
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def launch_chromium(*args: str) -> AsyncIterator[Browser]:
    """Debian's Chromium, headless; ``args`` are extra command-line switches (e.g. a fake camera)."""
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"no Chromium at {CHROMIUM}: apt-get install chromium (never `playwright install`)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=list(args))
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class OpenedPage:
    """A page and what went wrong in it: console errors (a CSP violation is one) and uncaught errors."""

    page: Page
    errors: list[str]

    async def evaluate(self, expression: str, argument: object = None) -> object:
        return await self.page.evaluate(expression, argument)


@contextlib.asynccontextmanager
async def open_page(browser: Browser, url: str, *, ready: str, timeout_ms: float = 10_000) -> AsyncIterator[OpenedPage]:
    """Open ``url`` in a fresh browser context (closed on exit) and wait until the page's module
    script set ``window[ready]``; a page that never gets there fails with the errors it logged."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        errors: list[str] = []

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                errors.append(message.text)

        page.on("console", console)
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(url)
        try:
            await page.wait_for_function("name => name in window", arg=ready, timeout=timeout_ms)
        except Error:
            raise AssertionError(f"{url} never defined window.{ready}; the page logged: {errors}") from None
        yield OpenedPage(page, errors)
    finally:
        await context.close()

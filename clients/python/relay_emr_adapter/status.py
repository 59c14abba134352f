"""The health endpoint: ``GET /health`` on 127.0.0.1 only, counts and the last error code from
the journal, and whether the relay's socket is up. Ids and codes only."""

from __future__ import annotations

from aiohttp import web

from relay_emr_adapter.adapter import Adapter

HOST = "127.0.0.1"


def status_app(adapter: Adapter) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        body = adapter.status().to_json() | {"relay_connected": adapter.connected}
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/health", health)
    return app


async def serve_status(adapter: Adapter, port: int) -> web.AppRunner:
    runner = web.AppRunner(status_app(adapter), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    return runner

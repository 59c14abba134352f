"""`relay serve`: run the server until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from aiohttp import web

from relay.app import build_app
from relay.cli.options import settings_from
from relay.clock import SystemClock
from relay.collector import tune_collector
from relay.http.tls import server_context
from relay.runtime import open_runtime
from relay.settings import Settings

log = logging.getLogger("relay")


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser("serve", help="run the Relay server")
    parser.add_argument("--host", help="bind address (RELAY_HOST)")
    parser.add_argument("--port", type=int, help="TCP port (RELAY_PORT)")
    parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain (RELAY_TLS_CERT)")
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key (RELAY_TLS_KEY)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, host=args.host, port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(serve(settings))
    return 0


async def serve(settings: Settings) -> None:
    ssl_context = server_context(settings.tls_cert, settings.tls_key) if settings.tls_cert and settings.tls_key else None
    async with open_runtime(settings, SystemClock()) as runtime:
        runner = web.AppRunner(build_app(runtime), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_context)
        await site.start()
        tune_collector()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        bound = runner.addresses[0]
        scheme = "https" if ssl_context else "http"
        log.info("relay listening on %s://%s:%s (database: %s, broker: %s)", scheme, bound[0], bound[1],
                 "sqlite" if settings.embedded_database else "external", "redis" if settings.redis_url else "in-process")
        print(f"relay listening on {scheme}://{bound[0]}:{bound[1]}", flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

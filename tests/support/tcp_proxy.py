"""A TCP forwarder on 127.0.0.1 in front of a real backend, so a test can make the backend stop
answering (every connection dropped, new ones refused) and come back, without touching it."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from relay.settings import load_settings
from tests.support.backends import POSTGRES_URL, REDIS_URL, clear_redis_namespace, reset_postgres
from tests.support.clock import ManualClock
from tests.support.harness import Relay, free_port, running_relay


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (again, on the same port) and forward every connection."""
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        """Refuse new connections and cut every open one, as a crashed backend would."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, upstream_writer}
        pumps = [asyncio.ensure_future(_pump(client_reader, upstream_writer)),
                 asyncio.ensure_future(_pump(upstream_reader, client_writer))]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)
            for writer in (client_writer, upstream_writer):
                writer.transport.abort()
                self._writers.discard(writer)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def tcp_proxy(host: str, port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@contextlib.asynccontextmanager
async def relay_behind_proxies(tmp_path: Path) -> AsyncIterator[tuple[Relay, TcpProxy, TcpProxy]]:
    """A scale-out Relay, on emptied tables, whose PostgreSQL and Redis connections pass through proxies
    the test controls."""
    await reset_postgres()
    database, redis = make_url(POSTGRES_URL), make_url(REDIS_URL)
    namespace = f"proxied{secrets.token_hex(4)}"
    async with tcp_proxy(database.host or "127.0.0.1", database.port or 5432) as database_proxy, \
            tcp_proxy(redis.host or "127.0.0.1", redis.port or 6379) as redis_proxy:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data", "port": free_port(),
            "database_url": database.set(host="127.0.0.1", port=database_proxy.port).render_as_string(False),
            "redis_url": redis.set(host="127.0.0.1", port=redis_proxy.port).render_as_string(False),
            "redis_namespace": namespace,
        }
        try:
            async with running_relay(load_settings(values, environ={}), ManualClock()) as relay:
                yield relay, database_proxy, redis_proxy
        finally:
            await clear_redis_namespace(namespace)

"""The two servers of the chat benchmark as their own processes on 127.0.0.1: `relay serve` (embedded
defaults, or scale-out on PostgreSQL + Redis) and the bare forwarder; their RSS and CPU from /proc."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import redis.asyncio

from tests.support.harness import PASSWORD, free_port

RELAY = Path(sys.executable).with_name("relay")
TENANT = "bench"
ADMIN = "bench-admin"
LOGIN_RATE_PER_MINUTE = 100000


@dataclass(frozen=True)
class Backend:
    """Where the relay keeps its state: embedded (SQLite, in-process broker) or scale-out."""

    postgres_url: str | None = None
    redis_url: str | None = None
    redis_namespace: str = field(default_factory=lambda: f"bench-{secrets.token_hex(6)}")

    @property
    def name(self) -> str:
        return "scale-out (PostgreSQL + Redis)" if self.postgres_url else "embedded (SQLite, in-process)"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def relay_environment(data: Path, backend: Backend, max_devices_per_user: int) -> dict[str, str]:
    """The caller's environment without RELAY_* settings, plus the benchmark's own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env |= {"RELAY_DATA_DIR": str(data), "RELAY_LOGIN_RATE_PER_MINUTE": str(LOGIN_RATE_PER_MINUTE),
            "RELAY_MAX_DEVICES_PER_USER": str(max(20, max_devices_per_user)), "RELAY_LOG_LEVEL": "WARNING"}
    if backend.postgres_url and backend.redis_url:
        env |= {"RELAY_DATABASE_URL": backend.postgres_url, "RELAY_REDIS_URL": backend.redis_url,
                "RELAY_REDIS_NAMESPACE": backend.redis_namespace}
    return env


async def empty_postgres(url: str) -> None:
    """Drop and recreate the public schema of the benchmark's own database."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


async def forget_redis_keys(backend: Backend) -> None:
    """Delete what the relay left in Redis under the benchmark's namespace."""
    if not backend.redis_url:
        return
    client = redis.asyncio.Redis.from_url(backend.redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{backend.redis_namespace}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def relay_cli(env: dict[str, str], *args: str, password: bool = False) -> None:
    result = subprocess.run([RELAY, *args], env=env, input=(PASSWORD + "\n").encode() if password else None,
                            capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"relay {' '.join(args)} failed: {result.stderr.decode(errors='replace').strip()}")


async def wait_for(url: str, process: subprocess.Popen[bytes], *, seconds: float = 30.0) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(int(seconds / 0.1)):
            if process.poll() is not None:
                raise RuntimeError(f"{url} exited with {process.returncode} before answering")
            try:
                async with http.get(url):
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


async def start_relay(work: Path, backend: Backend, *, max_devices_per_user: int) -> Server:
    """Create the tenant and its admin with `relay admin`, then start `relay serve`."""
    env = relay_environment(work / "data", backend, max_devices_per_user)
    if backend.postgres_url:
        await empty_postgres(backend.postgres_url)
        relay_cli(env, "db", "upgrade")
    relay_cli(env, "admin", "create-tenant", TENANT)
    relay_cli(env, "admin", "create-user", "--tenant", TENANT, "--username", ADMIN, "--role", "admin",
              "--password-stdin", password=True)
    port = free_port()
    server = launch([str(RELAY), "serve", "--port", str(port)], port, work / "relay.log", env)
    await wait_for(server.url + "/healthz", server.process)
    return server


async def start_forwarder(work: Path) -> Server:
    port = free_port()
    server = launch([sys.executable, "-m", "bench.chat_forwarder", str(port)], port, work / "forwarder.log")
    await wait_for(server.url + "/healthz", server.process)
    return server


def launch(command: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Server:
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)
    return Server(f"http://127.0.0.1:{port}", process, log)


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()



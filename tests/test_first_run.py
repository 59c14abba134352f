"""A new operator's first minute, as README.md tells it: create a tenant and an admin, serve, log in."""

from __future__ import annotations

import stat
from pathlib import Path

import aiohttp

from tests.support.harness import free_port
from tests.support.subprocess_relay import relay_env, run_relay, serving

PASSWORD = "correct horse battery staple"


async def test_first_tenant_and_admin_can_log_in_on_embedded_defaults(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = relay_env()

    tenant = run_relay(["admin", "create-tenant", "demo", "--data-dir", str(data_dir)], env=env, cwd=tmp_path)
    assert tenant.returncode == 0, tenant.stderr
    assert "tenant demo created" in tenant.stdout
    user = run_relay(
        ["admin", "create-user", "--tenant", "demo", "--username", "admin", "--role", "admin", "--password-stdin",
         "--data-dir", str(data_dir)],
        env=env, cwd=tmp_path, stdin=PASSWORD + "\n",
    )
    assert user.returncode == 0, user.stderr
    assert "user admin (admin) created in demo" in user.stdout
    assert PASSWORD not in user.stdout + user.stderr

    port = free_port()
    with serving(["serve", "--port", str(port), "--data-dir", str(data_dir)], env=env, cwd=tmp_path) as server:
        assert server.url == f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(server.url) as http:
            async with http.get("/healthz") as health:
                assert health.status == 200
                assert await health.json() == {"status": "ok"}
            async with http.post("/api/v1/auth/login",
                                 json={"tenant": "demo", "username": "admin", "password": PASSWORD}) as login:
                assert login.status == 201, await login.text()
                token = (await login.json())["token"]
            async with http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}) as me:
                assert me.status == 200
                assert (await me.json())["username"] == "admin"
                assert (await me.json())["role"] == "admin"
        assert PASSWORD not in server.stderr()

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    files = [path for path in data_dir.rglob("*") if path.is_file()]
    assert {path.name for path in files} >= {"relay.db", "keys.json"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_serve_with_no_settings_uses_the_data_dir_in_the_working_directory(tmp_path: Path) -> None:
    with serving(["serve", "--port", "0"], env=relay_env(), cwd=tmp_path) as server:
        assert server.url.startswith("http://127.0.0.1:")
    assert (tmp_path / "relay-data" / "relay.db").is_file()
    assert (tmp_path / "relay-data" / "keys.json").is_file()

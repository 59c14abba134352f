"""Settings errors an operator can act on: `relay serve` names the setting and the cause, and exits 2."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.support.backends import BACKENDS, POSTGRES_URL, REDIS_URL, asyncpg_dsn
from tests.support.harness import free_port
from tests.support.subprocess_relay import relay_env, run_relay, serving

needs_scaleout = pytest.mark.skipif("scaleout" not in BACKENDS, reason="RELAY_TEST_BACKENDS excludes scaleout")


def serve_once(tmp_path: Path, settings: dict[str, str], *args: str) -> tuple[int, str]:
    env = relay_env({"RELAY_DATA_DIR": str(tmp_path / "data"), **settings})
    result = run_relay(["serve", *args], env=env, cwd=tmp_path, timeout=60)
    return result.returncode, result.stderr


def test_database_on_a_closed_port_is_named_with_its_address(tmp_path: Path) -> None:
    code, stderr = serve_once(tmp_path, {"RELAY_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/x"})
    assert code == 2
    assert "RELAY_DATABASE_URL: cannot connect to 127.0.0.1:1: connection refused" in stderr
    assert "Traceback" not in stderr


def test_redis_on_a_closed_port_is_named_with_its_address(tmp_path: Path) -> None:
    code, stderr = serve_once(tmp_path, {"RELAY_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert code == 2
    assert "RELAY_REDIS_URL: cannot connect to 127.0.0.1:1: connection refused" in stderr
    assert "Traceback" not in stderr


def test_unsupported_database_driver_says_which_to_use(tmp_path: Path) -> None:
    code, stderr = serve_once(tmp_path, {"RELAY_DATABASE_URL": "mysql://root@127.0.0.1/relay"})
    assert code == 2
    assert "RELAY_DATABASE_URL: unsupported driver 'mysql'" in stderr
    assert "postgresql+asyncpg://" in stderr


def test_a_bad_value_names_the_setting(tmp_path: Path) -> None:
    code, stderr = serve_once(tmp_path, {"RELAY_PORT": "abc"})
    assert code == 2
    assert "RELAY_PORT:" in stderr and "integer" in stderr
    assert "Traceback" not in stderr


def test_a_tls_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    code, stderr = serve_once(tmp_path, {"RELAY_TLS_CERT": str(tmp_path / "cert.pem")})
    assert code == 2
    assert "tls_cert and tls_key must be given together" in stderr


def test_a_missing_tls_certificate_file_is_named(tmp_path: Path) -> None:
    code, stderr = serve_once(
        tmp_path, {}, "--tls-cert", str(tmp_path / "absent.pem"), "--tls-key", str(tmp_path / "absent-key.pem")
    )
    assert code == 2
    assert f"RELAY_TLS_CERT: {tmp_path / 'absent.pem'} does not exist" in stderr


def test_an_unknown_key_in_the_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('port = 8081\nlisten_adress = "0.0.0.0"\n')
    code, stderr = serve_once(tmp_path, {"RELAY_CONFIG": str(config)})
    assert code == 2
    assert f"config file {config}: unknown setting(s): listen_adress" in stderr


def test_a_config_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text("port: 8081\n")
    code, stderr = serve_once(tmp_path, {}, "--config", str(config))
    assert code == 2
    assert f"config file {config}: not valid TOML" in stderr


async def test_the_config_file_is_honoured_and_the_environment_overrides_it(tmp_path: Path) -> None:
    file_port, env_port = free_port(), free_port()
    data_dir = tmp_path / "from-config"
    config = tmp_path / "relay.toml"
    config.write_text(f'port = {file_port}\ndata_dir = "{data_dir}"\nsession_idle_timeout = 120\n')
    with serving(["serve", "--config", str(config)], env=relay_env(), cwd=tmp_path) as server:
        assert server.url == f"http://127.0.0.1:{file_port}"
        assert (data_dir / "relay.db").is_file()
        assert not (tmp_path / "relay-data").exists()
    with serving(["serve"], env=relay_env({"RELAY_CONFIG": str(config), "RELAY_PORT": str(env_port)}),
                 cwd=tmp_path) as server:
        assert server.url == f"http://127.0.0.1:{env_port}"


@contextlib.asynccontextmanager
async def empty_postgres_database() -> AsyncIterator[str]:
    """A fresh, empty database beside the test database (named after it), dropped afterwards."""
    name = f"{make_url(POSTGRES_URL).database}_stale"
    admin = await asyncpg.connect(asyncpg_dsn())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@needs_scaleout
async def test_serve_refuses_a_stale_postgres_schema_until_db_upgrade(tmp_path: Path) -> None:
    async with empty_postgres_database() as url:
        env = relay_env({"RELAY_DATA_DIR": str(tmp_path / "data"), "RELAY_DATABASE_URL": url,
                         "RELAY_REDIS_URL": REDIS_URL, "RELAY_PORT": "0"})
        refused = run_relay(["serve"], env=env, cwd=tmp_path)
        assert refused.returncode == 2
        assert "RELAY_DATABASE_URL: schema is at revision none" in refused.stderr
        assert "run `relay db upgrade`" in refused.stderr

        upgraded = run_relay(["db", "upgrade"], env=env, cwd=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
        current = run_relay(["db", "current"], env=env, cwd=tmp_path)
        assert current.stdout.strip() and current.stdout.strip() in upgraded.stdout

        with serving(["serve"], env=env, cwd=tmp_path) as server:
            async with aiohttp.ClientSession(server.url) as http, http.get("/readyz") as ready:
                assert ready.status == 200
                assert (await ready.json())["checks"] == {"database": "ok", "redis": "ok"}

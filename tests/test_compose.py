"""docker-compose.yml is a valid Compose file, and the configuration it describes works.

Docker is not available where the suite runs, so the last test runs the same configuration
without it: the `migrate` and `relay` services' commands and environment, read from the file,
with the service host names replaced by the test PostgreSQL and Redis on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.support.backends import BACKENDS, POSTGRES_URL, REDIS_URL, clear_redis_namespace
from tests.support.harness import free_port
from tests.support.subprocess_relay import relay_env, run_relay, serving, stop

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_ENV = {"POSTGRES_PASSWORD": "compose-test-password"}
_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ${NAME}, ${NAME:-default}, ${NAME:?error} and $$."""
    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name is None:
            return "$"
        value = env.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else arg
        if op in (":?", "?") and not value:
            raise ValueError(f"{name}: {arg}")
        return value or ""

    return _VARIABLE.sub(substitute, text)


def compose(env: dict[str, str] = COMPOSE_ENV) -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), env))


def compose_spec() -> dict[str, Any]:
    schema = files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(schema.read_text())


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    validator = jsonschema.Draft202012Validator(compose_spec())
    errors = sorted(validator.iter_errors(compose()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_specification_check_notices_a_mistake() -> None:
    document = compose()
    document["services"]["relay"]["healthcheck"]["intervall"] = "10s"
    document["services"]["redis"]["depends_on"] = {"postgres": {"condition": "service_ready"}}
    errors = list(jsonschema.Draft202012Validator(compose_spec()).iter_errors(document))
    assert len(errors) >= 2


def test_the_postgres_password_must_be_chosen() -> None:
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        compose({})


def test_services_wait_for_healthy_backends() -> None:
    services = compose()["services"]
    assert {"relay", "postgres", "redis", "migrate"} <= set(services)
    for name in ("relay", "postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    relay, migrate = services["relay"], services["migrate"]
    assert relay["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert relay["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert relay["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert relay["command"] == ["relay", "serve"]
    assert migrate["command"] == ["relay", "db", "upgrade"]
    for service in (relay, migrate):
        environment = service["environment"]
        assert make_url(environment["RELAY_DATABASE_URL"]).host == "postgres"
        assert make_url(environment["RELAY_DATABASE_URL"]).drivername == "postgresql+asyncpg"
        assert environment["RELAY_REDIS_URL"].startswith("redis://redis:6379/")
        assert service["build"] == "." and service["image"] == relay["image"]
    assert relay["volumes"] == migrate["volumes"], "every node must share the key file"
    assert "ports" not in services["postgres"] and "ports" not in services["redis"]
    assert relay["ports"] == ["127.0.0.1:8080:8080"], "plain HTTP is published on loopback only"
    for backend in ("postgres", "redis"):
        assert not services[backend]["image"].endswith(":latest")


def test_the_image_runs_relay_serve_as_an_unprivileged_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["relay", "serve"]' in dockerfile
    assert re.search(r"^USER relay$", dockerfile, flags=re.MULTILINE)
    assert "RELAY_DATA_DIR=/var/lib/relay" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "relay-data"} <= set(ignored)


def on_this_machine(service: dict[str, Any], data_dir: Path, port: int, namespace: str) -> dict[str, str]:
    """The service's environment with its backends' host names replaced by the test backends."""
    environment = {name: str(value) for name, value in service["environment"].items()}
    test_database, test_redis = make_url(POSTGRES_URL), make_url(REDIS_URL)
    database = make_url(environment["RELAY_DATABASE_URL"]).set(
        host=test_database.host, port=test_database.port, database=test_database.database,
        username=test_database.username, password=test_database.password,
    )
    redis = make_url(environment["RELAY_REDIS_URL"]).set(host=test_redis.host, port=test_redis.port)
    return environment | {
        "RELAY_DATABASE_URL": database.render_as_string(hide_password=False),
        "RELAY_REDIS_URL": redis.render_as_string(hide_password=False),
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(port),
        "RELAY_DATA_DIR": str(data_dir),
        # Shared test Redis: keep this run's keys apart from other runs'.
        "RELAY_REDIS_NAMESPACE": namespace,
    }


def relay_arguments(command: list[str]) -> list[str]:
    """The arguments of a service's `relay ...` command, to run with the `relay` installed here."""
    assert command[0] == "relay"
    return command[1:]


def healthcheck(service: dict[str, Any], port: int) -> int:
    kind, *command = service["healthcheck"]["test"]
    assert kind == "CMD" and command[0] == "python"
    command = [sys.executable, *(part.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for part in command[1:])]
    return subprocess.run(command, capture_output=True, timeout=30, check=False).returncode


@pytest.mark.skipif("scaleout" not in BACKENDS, reason="RELAY_TEST_BACKENDS excludes scaleout")
async def test_the_compose_configuration_runs_without_docker(tmp_path: Path) -> None:
    services = compose()["services"]
    port, namespace, data_dir = free_port(), f"compose{secrets.token_hex(4)}", tmp_path / "data"
    migrate_env = relay_env(on_this_machine(services["migrate"], data_dir, port, namespace))
    serve_env = relay_env(on_this_machine(services["relay"], data_dir, port, namespace))
    try:
        migrated = run_relay(relay_arguments(services["migrate"]["command"]), env=migrate_env, cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        assert "schema at revision" in migrated.stdout

        with serving(relay_arguments(services["relay"]["command"]), env=serve_env, cwd=tmp_path) as server:
            assert server.url == f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession(server.url) as http:
                async with http.get("/healthz") as health:
                    assert health.status == 200
                async with http.get("/readyz") as ready:
                    assert ready.status == 200
                    assert await ready.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}
            assert healthcheck(services["relay"], port) == 0
            assert stop(server.process) == 0
        assert healthcheck(services["relay"], port) != 0
    finally:
        await clear_redis_namespace(namespace)
    assert sorted(os.listdir(data_dir)) == ["keys.json"], "on PostgreSQL the data directory holds only the key file"

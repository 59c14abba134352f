"""The example in clients/python/README.md runs as written against a running relay: two
clinicians log in, register devices, and one's message reaches the other."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from tests.support.harness import PASSWORD, Relay

README = Path(__file__).resolve().parent.parent / "clients" / "python" / "README.md"


def readme_example() -> str:
    [example] = re.findall(r"```python\n(.*?)```", README.read_text().split("## The sealed envelope")[0], re.DOTALL)
    return example


async def run_example(path: Path, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, str(path), env=os.environ | env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    return process.returncode or 0, stdout.decode(), stderr.decode()


async def test_the_readme_example_sends_a_message_to_a_colleague(relay: Relay, tmp_path: Path) -> None:
    alice = await relay.account("alice")
    await relay.account("bob")
    example = tmp_path / "example.py"
    example.write_text(readme_example())
    env = {"RELAY_URL": relay.url, "RELAY_TENANT": "general", "RELAY_KEY_DIR": str(tmp_path / "keys"),
           "RELAY_ALICE_PASSWORD": PASSWORD, "RELAY_BOB_PASSWORD": PASSWORD}

    code, out, err = await run_example(example, env)
    assert code == 0, err
    assert out == "Bob received: Hello Bob, can you review bed 4?\n"
    assert sorted(path.name for path in (tmp_path / "keys").iterdir()) == ["alice.json", "bob.json"]

    code, out, err = await run_example(example, env)
    assert (code, out) == (0, "Bob received: Hello Bob, can you review bed 4?\n"), err
    devices = await (await relay.call("GET", "/api/v1/devices", token=alice.token)).json()
    assert len(devices["devices"]) == 1, "the second run reused the device"

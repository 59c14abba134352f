"""Running the `relay` command line as a real subprocess, the way an operator does."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 60.0
LISTENING = "relay listening on "


def relay_command() -> list[str]:
    """The installed `relay` console script next to this Python, else `python -m relay`."""
    script = Path(sys.executable).with_name("relay")
    return [str(script)] if script.exists() else [sys.executable, "-m", "relay"]


def relay_env(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any RELAY_* variable, plus ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RELAY_")}
    return env | dict(settings or {})


def run_relay(args: Sequence[str], *, env: Mapping[str, str], cwd: Path, stdin: str | None = None,
              timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run one `relay ...` command to completion and return what it printed and its exit code."""
    return subprocess.run(
        [*relay_command(), *args], env=dict(env), cwd=cwd, input=stdin, text=True,
        capture_output=True, timeout=timeout, check=False,
    )


@dataclass
class ServedRelay:
    process: subprocess.Popen[str]
    url: str
    stderr_path: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextlib.contextmanager
def serving(args: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> Iterator[ServedRelay]:
    """Start `relay serve ...`, wait for its "listening" line, and stop it with SIGTERM afterwards."""
    stderr_path = cwd / f"relay-serve-{time.monotonic_ns()}.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [*relay_command(), *args], env=dict(env), cwd=cwd, text=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
        )
    try:
        url = _wait_listening(process, stderr_path)
        yield ServedRelay(process, url, stderr_path)
    finally:
        stop(process)


def stop(process: subprocess.Popen[str]) -> int:
    """SIGTERM, as an init system would; kill only if it does not stop within 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
    return process.returncode


def _wait_listening(process: subprocess.Popen[str], stderr_path: Path) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([process.stdout], [], [], remaining)
        if not readable:
            break
        line = process.stdout.readline()
        if line.startswith(LISTENING):
            return line[len(LISTENING):].strip()
        if not line and process.poll() is not None:
            raise AssertionError(
                f"relay serve exited with {process.returncode} before listening:\n{stderr_path.read_text()}"
            )
    raise AssertionError(f"relay serve did not listen within {START_TIMEOUT} s:\n{stderr_path.read_text()}")

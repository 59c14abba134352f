"""Shared pieces of the CLI: settings from the global flags, and running a coroutine with a Runtime."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from relay.clock import SystemClock
from relay.runtime import Runtime, open_runtime
from relay.settings import Settings, load_settings

T = TypeVar("T")


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    config = Path(args.config) if getattr(args, "config", None) else None
    return load_settings({"data_dir": getattr(args, "data_dir", None), **overrides}, config_file=config)


def with_runtime(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_runtime(settings, SystemClock()) as runtime:
            return await work(runtime)

    return asyncio.run(run())

"""``relay-emr-adapter``: ``init`` (register the device, print its id and fingerprint),
``run`` (file until stopped), ``status`` (the journal's counts and last error, as JSON)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence

from relay_client.directory import fingerprint
from relay_client.errors import RelayClientError

from relay_emr_adapter.adapter import Adapter
from relay_emr_adapter.config import Config, load_config
from relay_emr_adapter.errors import ConfigError
from relay_emr_adapter.state import Journal
from relay_emr_adapter.status import serve_status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay-emr-adapter", description="Relay's EMR upload adapter")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("init", "log in and register this adapter's device; print its fingerprint"),
                            ("run", "pull, file and acknowledge until stopped"),
                            ("status", "print pending, filed and rejected counts and the last error")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--config", required=True, help="the adapter's TOML configuration file")
    return parser


async def _init(config: Config) -> dict[str, str]:
    async with Adapter(config) as adapter:
        assert adapter.client is not None
        secrets = adapter.client.devices.keyring()
        return {"device_id": secrets.device_id,
                "fingerprint": fingerprint(adapter.client.devices.secrets.identity_key)}  # type: ignore[union-attr]


async def _run(config: Config) -> None:
    """Until SIGTERM or SIGINT: then the blob in hand is left for the next run (the journal
    and the relay still hold it), and the connections and the journal close cleanly."""
    async with Adapter(config) as adapter:
        runner = await serve_status(adapter, config.status_port) if config.status_port else None
        running = asyncio.current_task()
        assert running is not None
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop, running.cancel)
        try:
            await adapter.run()
        except asyncio.CancelledError:
            logging.getLogger("relay_emr_adapter").info("stopping")
        finally:
            for stop in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(stop)
            if runner is not None:
                await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load_config(arguments.config)
        if arguments.command == "status":
            journal = Journal(config.journal_file)
            try:
                print(json.dumps(journal.summary().to_json(), indent=2))
            finally:
                journal.close()
        elif arguments.command == "init":
            print(json.dumps(asyncio.run(_init(config)), indent=2))
        else:
            asyncio.run(_run(config))
    except (ConfigError, RelayClientError) as error:
        print(f"relay-emr-adapter: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`relay`: serve, migrate, bootstrap tenants and users, rotate keys, verify and export the audit log."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from relay.cli import admin, audit, db, devcert, keys, serve
from relay.errors import RelayError

COMMAND_MODULES = (serve, db, admin, devcert, keys, audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description=__doc__)
    _add_global_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    for command in command_parsers(parser):
        _add_global_options(command, default=argparse.SUPPRESS)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    """--config and --data-dir, accepted before or after the command (``relay serve --data-dir D``)."""
    parser.add_argument("--config", metavar="FILE", default=default, help="TOML settings file (also RELAY_CONFIG)")
    parser.add_argument("--data-dir", metavar="DIR", default=default, help="data directory (also RELAY_DATA_DIR)")


def command_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command and subcommand parser below ``parser``, depth first."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += [child, *command_parsers(child)]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(0o077)
    try:
        return int(args.run(args) or 0)
    except RelayError as error:
        print(f"relay: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

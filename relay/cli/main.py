"""`relay`: serve, migrate, bootstrap tenants and users, rotate keys, verify and export the audit log."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from relay.cli import admin, db, serve
from relay.errors import RelayError

COMMAND_MODULES = (serve, db, admin)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description=__doc__)
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (also RELAY_CONFIG)")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (also RELAY_DATA_DIR)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


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

"""`relay keys rotate`: a new key-encryption key, stored secrets re-sealed under it, unused keys retired."""

from __future__ import annotations

import argparse
from typing import Any

from relay.cli.options import settings_from, with_runtime
from relay.keys.rotation import RotationReport, rotate_keys
from relay.runtime import Runtime


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser("keys", help="the server's key-encryption keys")
    actions = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    actions.add_parser(
        "rotate", help="add a key-encryption key, re-seal stored secrets under it and retire keys no longer used; "
        "running servers pick up the new key file by themselves",
    ).set_defaults(run=rotate)


def rotate(args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> RotationReport:
        return await rotate_keys(runtime.database, runtime.keyring, runtime.audit, runtime.clock)

    report = with_runtime(settings_from(args), work)
    print(f"new active key-encryption key: {report.active_key}")
    for label, count in report.resealed.items():
        print(f"re-sealed {count} value(s) of {label}")
    for label, count in report.unreadable.items():
        if count:
            print(f"warning: {count} value(s) of {label} could not be opened and were left as they are")
    print(f"retired keys: {', '.join(report.retired) or 'none'}")
    if report.still_used:
        print(f"older keys kept for values not re-sealed: {', '.join(report.still_used)}")
    return 0

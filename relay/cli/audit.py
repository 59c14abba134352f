"""`relay audit verify` and `relay audit export`: the operator's view of the whole audit log."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from relay.audit.reader import EventFilter
from relay.audit.verify import Anchor, Verification
from relay.cli.options import settings_from, with_runtime
from relay.errors import InvalidRequest, NotFound
from relay.runtime import Runtime

OPERATOR = ("operator", None)


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser("audit", help="verify and export the audit log")
    actions = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    verify = actions.add_parser(
        "verify", help="check every row of the hash chain; exit 1 and one line per problem if it was tampered with"
    )
    verify.add_argument("--anchor", action="append", default=[], type=_anchor, metavar="SEQ:HASH",
                        help="a head printed by an earlier run and kept outside Relay; it must still match "
                        "(repeatable)")
    verify.set_defaults(run=run_verify)

    export = actions.add_parser("export", help="write audit rows as JSON lines (one object per row, every column)")
    export.add_argument("--tenant", metavar="SLUG", help="only this tenant's rows (default: every row)")
    export.add_argument("--since", type=_time, metavar="ISO", help="only rows at or after this time (UTC unless a zone is given)")
    export.add_argument("--until", type=_time, metavar="ISO", help="only rows before this time (UTC unless a zone is given)")
    export.add_argument("--output", metavar="FILE", help="write here (created with mode 0600) instead of standard output")
    export.set_defaults(run=run_export)


def _anchor(text: str) -> Anchor:
    try:
        return Anchor.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def run_verify(args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> Verification:
        return await runtime.audit_reader.verify(actor=OPERATOR, tenant_id=None, anchors=tuple(args.anchor))

    result = with_runtime(settings_from(args), work)
    if result.intact:
        print(f"audit log intact: {result.rows} rows, head {result.head_label}")
        return 0
    for finding in result.findings:
        print(finding.line())
    if result.unlisted:
        print(f"{result.unlisted} more problem(s) not listed")
    return 1


def run_export(args: argparse.Namespace) -> int:
    if args.since and args.until and args.since >= args.until:
        raise InvalidRequest("--since must be earlier than --until")

    async def work(runtime: Runtime) -> int:
        tenant_id = None
        if args.tenant:
            tenant = await runtime.accounts.tenant_by_slug(args.tenant)
            if tenant is None:
                raise NotFound(f"no tenant {args.tenant!r}")
            tenant_id = tenant.id
        started = await runtime.audit_reader.export(
            actor=OPERATOR, tenant_id=tenant_id, event_filter=EventFilter(since=args.since, until=args.until)
        )
        with _open_output(args.output) as output:
            count = 0
            async for line in started.lines:
                output.write(line)
                count += 1
        return count

    count = with_runtime(settings_from(args), work)
    sys.stdout.flush()
    if args.output:
        print(f"{count} audit row(s) written to {args.output}", file=sys.stderr)
    return 0


def _open_output(path: str | None) -> contextlib.AbstractContextManager[TextIO]:
    if path is None:
        return contextlib.nullcontext(sys.stdout)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "w", encoding="utf-8")

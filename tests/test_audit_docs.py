"""docs/audit.md describes every action the audit log records and every kind of tampering
`relay audit verify` reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from relay.audit.actions import AuditAction
from relay.audit.verify import Tampering

DOC = Path(__file__).resolve().parents[1] / "docs" / "audit.md"


def table_keys() -> set[str]:
    """The first cell of every table row, when it is a single `code` span."""
    return set(re.findall(r"^\| `([^`]+)` \|", DOC.read_text(), flags=re.MULTILINE))


@pytest.mark.parametrize("action", list(AuditAction), ids=str)
def test_every_audit_action_has_a_row_in_the_docs(action: AuditAction) -> None:
    assert action.value in table_keys(), f"docs/audit.md: add a table row for `{action.value}`"


@pytest.mark.parametrize("kind", list(Tampering), ids=str)
def test_every_tampering_kind_is_explained(kind: Tampering) -> None:
    assert kind.value in table_keys(), f"docs/audit.md: add a table row for `{kind.value}`"


def test_the_docs_list_no_action_that_does_not_exist() -> None:
    documented = {key for key in table_keys() if "." in key}
    assert documented <= {action.value for action in AuditAction}

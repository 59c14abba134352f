"""The documentation cannot drift: every setting, command, option and linked page is checked here."""

from __future__ import annotations

import argparse
import os
import re
import stat
from pathlib import Path

import pytest

from relay.cli.main import build_parser, command_parsers
from relay.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CLI_DOC = (ROOT / "docs" / "cli.md").read_text()
GLOBAL_OPTIONS = {"--config", "--data-dir", "-h", "--help"}


def settings_table() -> dict[str, list[str]]:
    """README's configuration table: environment variable -> its cells."""
    rows = {}
    for line in README.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `RELAY_") and len(cells) == 5:
            rows[cells[0].strip("`")] = cells
    return rows


def serve_flags() -> dict[str, str]:
    """`relay serve` flags that set a setting, by the setting's name."""
    serve = next(p for p in command_parsers(build_parser()) if p.prog == "relay serve")
    flags = {}
    for action in serve._actions:
        if action.dest in Settings.model_fields and action.option_strings:
            flags[action.dest] = action.option_strings[0]
    return flags | {"data_dir": "--data-dir"}


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_in_the_readme_table_with_its_default(name: str) -> None:
    field = Settings.model_fields[name]
    row = settings_table().get(f"RELAY_{name.upper()}")
    assert row is not None, f"README.md's configuration table has no row for RELAY_{name.upper()}"
    _, toml_key, flag, default, meaning = row
    assert toml_key == f"`{name}`"
    assert default == ("—" if field.default is None else f"`{field.default}`")
    assert flag == (f"`{serve_flags()[name]}`" if name in serve_flags() else "—")
    assert meaning


def test_the_readme_table_has_no_setting_that_does_not_exist() -> None:
    documented = set(settings_table())
    assert documented == {f"RELAY_{name.upper()}" for name in Settings.model_fields}


def commands() -> list[argparse.ArgumentParser]:
    return command_parsers(build_parser())


@pytest.mark.parametrize("command", [p.prog for p in commands()])
def test_every_command_is_documented(command: str) -> None:
    assert f"`{command}" in README + CLI_DOC, f"{command} is in neither README.md nor docs/cli.md"


@pytest.mark.parametrize("command", [p.prog for p in commands()])
def test_every_option_of_every_command_is_documented(command: str) -> None:
    parser = next(p for p in commands() if p.prog == command)
    section = CLI_DOC[CLI_DOC.index(f"`{command}"):]
    next_heading = section.find("\n## ", 1)
    section = section if next_heading < 0 else section[:next_heading]
    for action in parser._actions:
        for option in set(action.option_strings) - GLOBAL_OPTIONS:
            assert option in section, f"docs/cli.md does not describe {command} {option}"


def test_global_options_are_documented() -> None:
    for option in ("--config FILE", "--data-dir DIR"):
        assert f"`{option}`" in CLI_DOC


def test_linked_documents_exist() -> None:
    for document, text in (("README.md", README), ("docs/cli.md", CLI_DOC),
                           ("docs/architecture.md", (ROOT / "docs" / "architecture.md").read_text())):
        base = (ROOT / document).parent
        for target in re.findall(r"\]\(([^)#:]+)\)", text):
            assert (base / target).is_file(), f"{document} links to missing {target}"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)


def test_the_readme_gives_exactly_the_two_set_up_commands() -> None:
    blocks = code_blocks(README)
    assert blocks[0].strip() == "./scripts/serve"
    assert blocks[2].strip() == "./scripts/test"
    for script in ("serve", "test"):
        mode = (ROOT / "scripts" / script).stat().st_mode
        assert mode & stat.S_IXUSR, f"scripts/{script} is not executable"


def test_the_first_run_commands_in_the_readme_are_real() -> None:
    first_run = code_blocks(README)[1]
    assert ".venv/bin/relay admin create-tenant demo" in first_run
    assert ".venv/bin/relay admin create-user --tenant demo --username admin --role admin" in first_run
    parser = build_parser()
    for line in first_run.splitlines():
        if line.startswith(".venv/bin/relay "):
            parser.parse_args(line.split()[1:])
    assert "/api/v1/auth/login" in first_run


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    assert "set -euo pipefail" in ci
    assert code_blocks(README)[2].strip() in ci.splitlines()[-1]

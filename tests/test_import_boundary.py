"""The server package never imports the code that opens envelopes, and the client SDK never
imports the server: checked by importing every server module in a fresh interpreter, and by
reading every import statement in both trees."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "relay"
CLIENT = ROOT / "clients" / "python" / "relay_client"
ADAPTER = ROOT / "clients" / "python" / "relay_emr_adapter"

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
import relay
failed = {}
for module in pkgutil.walk_packages(relay.__path__, "relay."):
    if module.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(module.name)
    except Exception as error:
        failed[module.name] = repr(error)
print(json.dumps({
    "imported": sorted(name for name in sys.modules if name == "relay" or name.startswith("relay.")),
    "client": sorted(name for name in sys.modules if name.split(".")[0] == "relay_client"),
    "failed": failed,
}))
"""


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            roots.add(str(node.args[0].value).split(".")[0])
    return roots


def test_importing_every_server_module_loads_no_client_code() -> None:
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True, text=True, cwd=ROOT,
                            check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}
    assert {"relay.app", "relay.runtime", "relay.keys.routing_view"} <= set(report["imported"])
    assert report["client"] == []


def test_no_server_source_names_the_client_package() -> None:
    offenders = [str(path.relative_to(ROOT)) for path in SERVER.rglob("*.py") if "relay_client" in imported_roots(path)]
    assert offenders == []


def test_the_client_sdk_never_imports_the_server() -> None:
    sources = list(CLIENT.rglob("*.py"))
    assert sources
    offenders = [str(path.relative_to(ROOT)) for path in sources if "relay" in imported_roots(path)]
    assert offenders == []


def test_the_emr_adapter_imports_the_sdk_never_the_server() -> None:
    sources = list(ADAPTER.rglob("*.py"))
    assert sources
    assert [str(path.relative_to(ROOT)) for path in sources if "relay" in imported_roots(path)] == []

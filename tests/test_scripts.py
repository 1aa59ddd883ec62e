"""The helper scripts in scripts/ import only what the package still has.

They import pipeline modules inside main(), so nothing else would notice a module or a name
that moved; this reads every `from pipeline... import ...` of every script and resolves it.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_imports_resolve(script: Path) -> None:
    found = 0
    for node in ast.walk(ast.parse(script.read_text(), str(script))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pipeline":
            mod = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(mod, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"), f"{script.name}: {node.module}.{alias.name}"
                found += 1
    assert found or "pipeline" not in script.read_text(), script.name

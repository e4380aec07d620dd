"""``lib`` stands on its own: no module of it (its tests included) imports Django or Anvil's
apps, directly or through what it imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent
FORBIDDEN = ("django", "apps", "portal", "rest_framework")


def modules() -> list[Path]:
    return sorted(LIB.rglob("*.py"))


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def test_no_module_imports_django_or_the_apps():
    found = {
        f"{path.relative_to(LIB.parent)}: {name}"
        for path in modules()
        for name in imported(path)
        if name.split(".")[0] in FORBIDDEN
    }
    assert not found


def test_importing_lib_loads_neither_django_nor_the_apps():
    names = [
        ".".join(path.relative_to(LIB.parent).with_suffix("").parts).removesuffix(".__init__")
        for path in modules()
        if "tests" not in path.parts
    ]
    code = (
        f"import sys; import {', '.join(names)}; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r})))"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, "-c", code], cwd=LIB.parent, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"

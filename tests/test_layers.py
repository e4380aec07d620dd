"""The apps are layers, and an import only goes down (or sideways, within a layer).

Every module under ``apps/`` is parsed (not imported) and each of its imports of another app is
checked against ``LAYERS``. Migrations are left out: they name other apps' migrations, not code.
Tests get a rule of their own: an app's ``tests/`` package and the top-level ``tests/`` package
sit above every layer and may import anything, but no app's own code may import a test module.

When a lower app must react to something a higher one does, the lower app sends a signal and the
higher one receives it (``apps/teams/signals.py``, ``apps/grants/signals.py``); otherwise the code
moves to the layer where everything it needs is below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APPS = Path(__file__).resolve().parent.parent / "apps"

# The layer of each app, bottom first. An app may import its own layer and the ones below it.
LAYERS = {
    # Shared bases that know no domain: errors, the page tables, asyncio and Redis helpers.
    "core": 0,
    # Who people are, their teams, the model catalog and the grants that pay for models.
    "accounts": 1,
    "teams": 1,
    "catalog": 1,
    "grants": 1,
    # What the keys and limits below usage write with: the audit log they append to, the REST
    # plumbing (error shape, parser, serializer fields) their APIs are built from.
    "audit": 2,
    "api": 2,
    # What a person holds in a grant: API and management keys, their monthly limit per grant.
    "keys": 3,
    "limits": 3,
    # The credit ledger: holds, settlements, counters and the reports read from them.
    "usage": 4,
    # The OpenAI-compatible gateway: authenticates a key, holds credits, relays the request.
    "gateway": 5,
    # Asynchronous jobs: a worker runs each through the gateway's admission and relay.
    "jobs": 5,
    # Pages and jobs built from everything below: consumption (My usage, the grant and key
    # pages), monthly statements, notification e-mails, and the demo data of `make run`.
    "consumption": 6,
    "statements": 6,
    "notifications": 6,
    "demo": 6,
    # Try a model: chat requests with one's own key through the gateway's admission.
    "playground": 6,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(APPS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, dotted module name) of every import statement in the module, relative imports
    made absolute. ``from apps import keys`` names ``apps.keys``; ``from apps.keys.auth import
    a, b`` names ``apps.keys.auth`` once."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.count(".") >= 1:
                found.append((node.lineno, base))
            else:  # from apps import keys, from tests import world: the names are modules
                found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def is_test_module(name: str) -> bool:
    """The top-level tests package, or an app's tests package or conftest."""
    parts = name.split(".")
    if parts[0] == "tests":
        return True
    return parts[0] == "apps" and ("tests" in parts[2:] or parts[-1] == "conftest")


def offences(path: Path, source: str) -> list[str]:
    """What is wrong with one module's imports, one message per import, naming the module,
    the import and (for an upward import) both apps and their layers."""
    module = module_name(path)
    app = module.split(".")[1]
    where = f"{path.relative_to(APPS.parent)}"
    tree = ast.parse(source, filename=str(path))
    messages = []
    for line, name in imported_names(tree, module, path.name == "__init__.py"):
        parts = name.split(".")
        if is_test_module(name):
            messages.append(f"{where}:{line} imports {name}: app code never imports test code")
            continue
        if parts[0] != "apps" or len(parts) < 2 or parts[1] == app:
            continue
        other = parts[1]
        if other not in LAYERS:
            messages.append(f"{where}:{line} imports {name}: app '{other}' has no layer")
        elif LAYERS[other] > LAYERS[app]:
            messages.append(
                f"{where}:{line} imports {name}: '{app}' (layer {LAYERS[app]}) may not import "
                f"'{other}' (layer {LAYERS[other]}), which is above it; let '{app}' send a "
                f"signal that '{other}' receives, or move the code"
            )
    return messages


def app_modules() -> list[Path]:
    """Every module of the apps' own code: no migrations, no tests."""
    return [
        path
        for path in sorted(APPS.glob("*/**/*.py"))
        if not {"migrations", "tests"} & set(path.relative_to(APPS).parts)
    ]


def test_it_finds_no_upward_import_between_apps():
    found = [message for path in app_modules() for message in offences(path, path.read_text())]
    assert not found, "\n".join(["Imports against LAYERS (tests/test_layers.py):", *found])


def test_it_gives_every_app_a_layer():
    apps = {path.parent.name for path in APPS.glob("*/apps.py")}
    assert apps - set(LAYERS) == set(), "apps without a layer: add them to LAYERS"
    assert set(LAYERS) - apps == set(), "LAYERS names apps that do not exist"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from apps.keys.models import ApiKey",
            "'teams' (layer 1) may not import 'keys' (layer 3)",
        ),
        ("import apps.usage.models", "'teams' (layer 1) may not import 'usage' (layer 4)"),
        ("from apps import limits", "imports apps.limits: 'teams' (layer 1) may not import"),
        ("from ..statements import models", "imports apps.statements: 'teams' (layer 1)"),
        ("def f():\n    from apps.demo import services", "'demo' (layer 6)"),
        ("from tests.world import make_world", "app code never imports test code"),
        ("from apps.usage.tests.conftest import place", "app code never imports test code"),
    ],
)
def test_it_names_the_module_the_import_and_both_layers(source, expected):
    path = APPS / "teams" / "services.py"
    (message,) = offences(path, source)
    assert message.startswith("apps/teams/services.py:")
    assert expected in message


@pytest.mark.parametrize(
    "source",
    [
        "from apps.core.exceptions import Conflict",
        "from apps.grants.models import Grant",  # the same layer
        "from apps.teams.models import Team",  # the app itself
        "from . import models",
        "from django.db import transaction",
    ],
)
def test_it_lets_an_app_import_its_own_layer_and_the_ones_below(source):
    assert offences(APPS / "teams" / "services.py", source) == []

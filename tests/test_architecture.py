"""DESIGN's import rules, checked on every module of every app.

Imports point one way: `gateway` uses `accounts`, `apikeys`, `pools`, `metering`;
`metering` uses `accounts`, `apikeys`, `pools`; `apikeys` uses `accounts`;
`accounts` and `pools` use only the plumbing. Nothing imports `gateway` (or `ops`,
the staff layer on top) except the root URLconf, and neither `portal/` nor `infra/`
imports an app. Imports inside functions count: a lazy import is still an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUMBING = {"portal", "infra"}
APPS = {"accounts", "apikeys", "pools", "metering", "gateway", "ops"}

# package -> the first-party packages its modules may import (itself always allowed)
ALLOWED = {
    "infra": {"portal"},
    "portal": {"infra"},
    "accounts": PLUMBING,
    "pools": PLUMBING,
    "apikeys": PLUMBING | {"accounts"},
    "metering": PLUMBING | {"accounts", "apikeys", "pools"},
    "gateway": PLUMBING | {"accounts", "apikeys", "pools", "metering"},
    "ops": PLUMBING | {"accounts", "apikeys", "pools", "metering"},
}
# the root URLconf mounts each app's urls
EXCEPTIONS = {"portal.urls": APPS}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, *, is_package: bool) -> set[str]:
    """Every module `source` imports from (absolute; relative ones resolved against `module`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
    return found


def forbidden_edges(root: Path) -> list[str]:
    """`importer -> imported` for each import DESIGN's rules forbid, under `root`."""
    edges = []
    for package, allowed in ALLOWED.items():
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            may = allowed | EXCEPTIONS.get(module, set()) | {package}
            source = path.read_text(encoding="utf-8")
            targets = imported_modules(source, module, is_package=path.name == "__init__.py")
            for target in sorted(targets):
                top = target.split(".")[0]
                if top in ALLOWED and top not in may:
                    edges.append(f"{module} -> {target}")
    return sorted(set(edges))


def test_no_app_module_breaks_designs_import_rules():
    assert forbidden_edges(ROOT) == []


def test_the_walk_sees_every_kind_of_import():
    # the allowed edges the real tree has, so the walk cannot pass by seeing nothing
    source = (ROOT / "gateway" / "flow.py").read_text(encoding="utf-8")
    found = imported_modules(source, "gateway.flow", is_package=False)
    assert any(name.startswith("apikeys") for name in found)
    assert any(name.startswith("pools") for name in found)


@pytest.mark.parametrize(
    ("where", "line", "edge"),
    [
        (
            "accounts/services.py",
            "from apikeys.models import ApiKey",
            "accounts.services -> apikeys",
        ),
        (
            "pools/health.py",
            "def f():\n    from metering import services",
            "pools.health -> metering",
        ),
        ("metering/api.py", "import gateway.flow", "metering.api -> gateway.flow"),
        ("ops/views.py", "from gateway import status", "ops.views -> gateway"),
        ("infra/faststate.py", "from pools.models import Router", "infra.faststate -> pools"),
        ("portal/probes.py", "from ..accounts import models", "portal.probes -> accounts"),
        ("apikeys/sub/__init__.py", "from ...pools import catalog", "apikeys.sub -> pools"),
    ],
)
def test_a_forbidden_import_is_reported(tmp_path, where, line, edge):
    for package in ALLOWED:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "portal" / "urls.py").write_text(
        "from gateway import urls\nfrom ops import views\n"
    )
    (tmp_path / "gateway" / "views.py").write_text("from metering import services\n")
    target = tmp_path / where
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(line + "\n")
    found = forbidden_edges(tmp_path)
    assert len(found) == 1
    assert found[0].startswith(edge)

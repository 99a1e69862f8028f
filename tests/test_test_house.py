"""The test house, checked on every module under tests/ (issue 13 item 7):

- builders of test data are in tests/factories (a module per app), other helpers in
  tests/support: no module imports a test module (`test_*`) or a conftest, so nothing is
  shared by importing it from where it happens to be used;
- fixtures are defined in conftest.py files and test modules only, never in a helper
  module (a fixture needed by two modules belongs in a conftest above both);
- the stable error body (`{"error": {message, type, param, code}}`) is checked in
  tests/support/errors.py only: no other module defines an `assert_*error*` function or
  spells the body's field set.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support.errors import ERROR_FIELDS

TESTS = Path(__file__).resolve().parent
ERRORS_MODULE = Path("support") / "errors.py"
ERROR_HELPER = re.compile(r"^assert_\w*error")


def module_name(path: Path, tests: Path) -> str:
    parts = [tests.name, *path.relative_to(tests).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of_tests(tree: ast.Module, module: str, *, is_package: bool) -> set[str]:
    """The test modules and conftests a module imports (`import tests.e2e.test_x`,
    `from tests.e2e import conftest`, `from .test_x import y`: relative ones resolved)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if is_test_or_conftest(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if is_test_or_conftest(target):
                found.add(target)
            else:  # `from package import test_module`
                names = (f"{target}.{alias.name}" for alias in node.names)
                found.update(name for name in names if is_test_or_conftest(name))
    return found


def is_test_or_conftest(dotted: str) -> bool:
    return any(part == "conftest" or part.startswith("test_") for part in dotted.split("."))


def is_fixture(node: ast.FunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return True
        if isinstance(target, ast.Name) and target.id == "fixture":
            return True
    return False


def spells_error_fields(node: ast.AST) -> bool:
    if not isinstance(node, ast.Set | ast.List | ast.Tuple):
        return False
    values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
    return len(values) == len(node.elts) and set(values) == ERROR_FIELDS


def violations(tests: Path) -> list[str]:
    """What breaks the house rules among the modules under `tests`, one line each."""
    found: list[str] = []
    for path in sorted(tests.rglob("*.py")):
        where = path.relative_to(tests)
        module = module_name(path, tests)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target in sorted(imports_of_tests(tree, module, is_package=path.name == "__init__.py")):
            found.append(f"{where}: imports {target}")
        holds_fixtures = path.name == "conftest.py" or path.name.startswith("test_")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if is_fixture(node) and not holds_fixtures:
                    found.append(f"{where}: defines fixture {node.name} outside a conftest")
                if where != ERRORS_MODULE and ERROR_HELPER.match(node.name):
                    found.append(f"{where}: defines {node.name} (use tests/support/errors.py)")
            if where != ERRORS_MODULE and spells_error_fields(node):
                found.append(
                    f"{where}:{node.lineno}: checks the stable error's fields "
                    "(use tests/support/errors.py)"
                )
    return found


def test_the_suite_keeps_the_house_rules():
    assert violations(TESTS) == []


# --- the check finds what it is for ----------------------------------------------------------

FIXTURE = """
import pytest

@pytest.fixture
def router_url():
    return "http://127.0.0.1:9"
"""

BROKEN = [
    pytest.param(
        "e2e/test_b.py",
        "from tests.e2e.test_a import chat",
        "e2e/test_b.py: imports tests.e2e.test_a",
        id="from a test module import a name",
    ),
    pytest.param(
        "e2e/test_b.py",
        "from tests.e2e import test_a",
        "e2e/test_b.py: imports tests.e2e.test_a",
        id="from a package import a test module",
    ),
    pytest.param(
        "e2e/test_b.py",
        "import tests.e2e.test_a",
        "e2e/test_b.py: imports tests.e2e.test_a",
        id="import a test module",
    ),
    pytest.param(
        "e2e/test_b.py",
        "from .test_a import chat",
        "e2e/test_b.py: imports tests.e2e.test_a",
        id="relative import from a test module",
    ),
    pytest.param(
        "e2e/test_b.py",
        "from . import test_a",
        "e2e/test_b.py: imports tests.e2e.test_a",
        id="relative import of a test module",
    ),
    pytest.param(
        "ops/test_c.py",
        "from tests.e2e.conftest import gateway",
        "ops/test_c.py: imports tests.e2e.conftest",
        id="a test module imports a conftest",
    ),
    pytest.param(
        "ops/conftest.py",
        "from tests.e2e.conftest import gateway  # noqa: F401",
        "ops/conftest.py: imports tests.e2e.conftest",
        id="a conftest re-exports another's fixtures",
    ),
    pytest.param(
        "support/live.py",
        "from tests import conftest",
        "support/live.py: imports tests.conftest",
        id="a helper imports the root conftest",
    ),
    pytest.param(
        "support/live.py",
        "import pytest\n\n@pytest.fixture\ndef stack(gateway):\n    return gateway()\n",
        "support/live.py: defines fixture stack outside a conftest",
        id="a fixture in a helper module",
    ),
    pytest.param(
        "factories/pools.py",
        "from pytest import fixture\n\n@fixture(scope='module')\ndef catalog(db):\n    pass\n",
        "factories/pools.py: defines fixture catalog outside a conftest",
        id="a fixture in a factories module",
    ),
    pytest.param(
        "portal/stable_errors.py",
        "def assert_error(response):\n    pass\n",
        "portal/stable_errors.py: defines assert_error (use tests/support/errors.py)",
        id="a second error helper",
    ),
    pytest.param(
        "gateway/test_x.py",
        "def test_x():\n    def assert_anthropic_error(r):\n        pass\n",
        "gateway/test_x.py: defines assert_anthropic_error (use tests/support/errors.py)",
        id="an error helper nested in a test",
    ),
    pytest.param(
        "apikeys/test_y.py",
        'def refused(body):\n    assert set(body["error"]) == {"code", "message", "param", "type"}\n',
        "apikeys/test_y.py:2: checks the stable error's fields (use tests/support/errors.py)",
        id="the error's fields checked under another name",
    ),
]


def house(root: Path, path: str, source: str) -> Path:
    """A small tests/ tree that keeps the rules, plus `source` at `path`."""
    tests = root / "tests"
    files = {
        "__init__.py": "",
        "conftest.py": "",
        "e2e/__init__.py": "",
        "e2e/conftest.py": "",
        "e2e/test_a.py": FIXTURE + "\ndef chat():\n    pass\n",
        "support/__init__.py": "",
        "support/errors.py": (
            "def assert_stable_error(body):\n"
            '    assert set(body["error"]) == {"message", "type", "param", "code"}\n'
        ),
        "support/wire.py": "from tests.support.errors import assert_stable_error\n",
        path: source,
    }
    for name, text in files.items():
        (tests / name).parent.mkdir(parents=True, exist_ok=True)
        (tests / name).write_text(text)
    return tests


def test_a_house_that_keeps_the_rules_passes(tmp_path):
    assert violations(house(tmp_path, "e2e/__init__.py", "")) == []


@pytest.mark.parametrize(("path", "source", "reported"), BROKEN)
def test_a_broken_rule_is_reported(tmp_path, path, source, reported):
    assert violations(house(tmp_path, path, source)) == [reported]

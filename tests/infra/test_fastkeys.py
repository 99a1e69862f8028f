"""One registry of fast-state keys: the Lua scripts build the same names as Python, and
no module or script spells a key pattern by hand."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from infra import fastkeys, faststate

ROOT = Path(fastkeys.__file__).resolve().parent.parent
APPS = ("accounts", "apikeys", "gateway", "metering", "ops", "pools", "portal")


def test_the_lua_key_functions_build_the_python_names():
    patterns = fastkeys.ALL
    calls = ", ".join(
        f"k_{p.lua_name}({', '.join(repr(f'{p.lua_name}-{f}') for f in p.parts)})" for p in patterns
    )
    script = fastkeys.lua_prelude() + f"return {{{calls}}}"
    names = faststate.get_client().eval(script, 0, settings.FAST_STATE_PREFIX)
    expected = [p(**{f: f"{p.lua_name}-{f}" for f in p.parts}) for p in patterns]
    assert [n.decode() if isinstance(n, bytes) else n for n in names] == expected


def _heads() -> set[str]:
    """Each pattern's leading literal with its first colon: `authctx:`, `rl:k:`, `pause:global`."""
    return {re.match(r"[^{]*", p.template).group(0) for p in fastkeys.ALL}


def test_no_script_spells_a_key():
    for script in (ROOT / "gateway" / "lua").glob("*.lua"):
        text = script.read_text()
        assert "ARGV[1] .." not in text and "P .. '" not in text, script.name
        for head in _heads():
            assert f"'{head}" not in text, (script.name, head)


def test_no_python_module_spells_a_key():
    for app in APPS:
        for module in (ROOT / app).rglob("*.py"):
            if module.name == "fastkeys.py" or "migrations" in module.parts:
                continue
            text = module.read_text()
            assert "faststate.key(" not in text, module
            for head in _heads():
                for quote in ('"', "'"):
                    assert f"{quote}{head}" not in text, (module, head)

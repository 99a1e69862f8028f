"""admit.lua refuses in exactly the order, and with exactly the statuses, of gateway/refusals.py."""

from __future__ import annotations

import re
from pathlib import Path

from gateway import refusals, replies

ADMIT_LUA = Path(refusals.__file__).with_name("lua") / "admit.lua"


def _listing_block(source: str) -> tuple[str, str]:
    """(the script without its listing block, the listing block): a listing (GET /v1/models)
    answers from the key checks and requests/min alone."""
    start, end = source.index("-- listing:begin"), source.index("-- listing:end")
    return source[:start] + source[end:], source[start:end]


def lua_answers(source: str | None = None) -> list[str]:
    """The statuses admit.lua answers to a request, in the order the script first reaches
    them; the caller's own refusal (`answer(refuse, ...)`) as `<caller>`."""
    if source is None:
        source = _listing_block(ADMIT_LUA.read_text())[0]
    seen: list[str] = []
    for literal, variable in re.findall(r"\breturn answer\((?:'([a-z_]+)'|([a-z_]+))", source):
        status = literal or f"<{variable}>"
        if status not in seen:
            seen.append(status)
    return seen


def test_the_scripts_refusal_order_is_the_python_order():
    expected = ["<refuse>" if r.caller else r.status for r in refusals.ORDER]
    lua = [s for s in lua_answers() if s not in (*refusals.RETRY, *refusals.ADMITS)]
    assert lua == expected


def test_the_script_answers_nothing_the_python_side_does_not_know():
    known = {r.status for r in refusals.ORDER} | {*refusals.RETRY, *refusals.ADMITS, "<refuse>"}
    assert set(lua_answers()) <= known
    assert "ok" in lua_answers()


def test_a_listing_answers_listed_or_its_requests_per_minute():
    listing = _listing_block(ADMIT_LUA.read_text())[1]
    assert set(lua_answers(listing)) == {"listed", "rate_requests"}


def test_every_refusal_has_a_stable_error():
    from portal.errors import CATALOG

    for refusal in refusals.ORDER:
        assert refusal.code in CATALOG, refusal
    assert {s: replies.REFUSALS[s][0] for s in replies.REFUSALS} == {
        r.status: r.code for r in refusals.ORDER if not r.caller
    }

"""The README's fenced code blocks, by what runs them.

The info string after the opening fence is the language, then at most one tag:

    ```sh                 a command run against a live `bin/dev` (tests/deploy/test_readme.py)
    ```python             a snippet run the same way
    ```sh prod            a production step, run in order by tests/deploy/test_production.py
    ```sh prod-service    a long-running production process, started by the same test
    ```dotenv prod        the documented production environment, used by the same test
    ```sh compose         the docker compose commands (checked against docker-compose.yml)
    ```sh manual          bin/dev, bin/test and the bench: what the suite itself runs or is
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_FENCE = re.compile(r"^```(\w+)[ \t]*([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

RUNNABLE = {"sh", "python", "dotenv"}
TAGS = {
    "sh": {"", "prod", "prod-service", "compose", "manual"},
    "python": {""},
    "dotenv": {"prod"},
}


@dataclass(frozen=True)
class Block:
    lang: str
    tag: str
    text: str
    line: int

    def where(self) -> str:
        return f"README.md:{self.line} ({self.lang} {self.tag})".strip()


def blocks(path: Path = README) -> list[Block]:
    source = path.read_text()
    return [
        Block(m.group(1), m.group(2), m.group(3), source.count("\n", 0, m.start()) + 1)
        for m in _FENCE.finditer(source)
    ]


def tagged(lang: str, tag: str) -> list[Block]:
    return [b for b in blocks() if b.lang == lang and b.tag == tag]


def dotenv(block: Block) -> dict[str, str]:
    values = {}
    for raw in block.text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip()
    return values

"""The OpenAPI schema as `manage.py spectacular` writes it, and reading a response's
documented shape out of it."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS


def generate_schema(out: Path) -> dict:
    """Run `manage.py spectacular --fail-on-warn`; any warning raises SchemaGenerationError."""
    GENERATOR_STATS.reset()  # warnings already emitted in this process would otherwise be hidden
    call_command("spectacular", "--fail-on-warn", "--file", str(out))
    return yaml.safe_load(out.read_text())


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def response_schema(schema: dict, path: str, method: str, status: int) -> dict:
    responses = schema["paths"][path][method]["responses"]
    assert str(status) in responses, (
        f"{method.upper()} {path} documents {sorted(responses)}, not {status}"
    )
    content = responses[str(status)].get("content")
    assert content, f"{method.upper()} {path} {status} is documented with no body"
    return resolve(schema, content["application/json"]["schema"])


def documented_fields(schema: dict, path: str, method: str, status: int) -> set[str]:
    return set(response_schema(schema, path, method, status)["properties"])

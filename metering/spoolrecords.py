"""The usage spool's line format (metering/spool.py): one RequestRecord as one line of ASCII
JSON with a format version, and back."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime

VERSION = 1


def encode(record) -> bytes:
    """One line (ASCII JSON, newline-terminated) holding every field of a RequestRecord."""
    data = {"v": VERSION}
    for field in fields(record):
        data[field.name] = getattr(record, field.name)
    return (json.dumps(data, default=_json_value, separators=(",", ":")) + "\n").encode()


def _json_value(value):
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # UUIDs


def decode(line: bytes):
    """The RequestRecord of one line; ValueError/TypeError when the line is not one."""
    from metering.services import RequestRecord

    data = json.loads(line)
    if not isinstance(data, dict) or data.pop("v", None) != VERSION:
        raise ValueError("not a version-1 spool record")
    known = {field.name for field in fields(RequestRecord)}
    values = {name: value for name, value in data.items() if name in known}
    values["created_at"] = datetime.fromisoformat(values["created_at"])
    return RequestRecord(**values)

"""JSON values made from a JSON Schema, deterministically: one that validates, one that does not.

The simulator plays the model's side of tool calling and structured output, so it needs
arguments and objects that a validator accepts (and, for the fault knobs, ones it rejects)
without a validator of its own. It covers what pydantic and the common SDKs emit: objects
(`properties`, `required`, `additionalProperties`), arrays (`items`, `prefixItems`,
`minItems`/`maxItems`), strings (`enum`, `const`, `format`, `minLength`/`maxLength`),
numbers and their bounds, booleans, null, `anyOf`/`oneOf`/`allOf`, local `$ref`s and
nullable type lists. `pattern` is not honoured.
"""

from __future__ import annotations

import math
from typing import Any

# A schema reached again through a `$ref` already followed (a tree of nodes) gets only
# its required properties, so recursive models end; this many refs deep, give up.
MAX_REFS = 32

FORMAT_VALUES = {
    "date": "2025-01-15",
    "date-time": "2025-01-15T09:30:00Z",
    "time": "09:30:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "uuid": "123e4567-e89b-42d3-a456-426614174000",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}

# Candidates for "a value of another type", each tagged with the JSON types it satisfies.
_WRONG_TYPE_VALUES = (
    ("not valid", {"string"}),
    (1.5, {"number"}),
    (True, {"boolean"}),
    (None, {"null"}),
    ([], {"array"}),
    ({}, {"object"}),
)


class _Unviolable(Exception):
    """The schema accepts any value this module knows how to make."""


def valid_instance(schema: Any) -> Any:
    """A value that validates against `schema`."""
    return _valid(schema, root=schema, name="", index=0, refs=())


def invalid_instance(schema: Any) -> Any:
    """A value that does not validate against `schema`: for an object, valid but for one
    property (the first required one left out, else the first property of the wrong type,
    else an unexpected property); otherwise a value of another type. A schema that any
    object satisfies gets a JSON array, which at least is not an object."""
    try:
        return _invalid(schema, root=schema, depth=0)
    except _Unviolable:
        return ["not", "an", "object"]


# --- resolution ----------------------------------------------------------------------


def _resolve(schema: Any, root: Any) -> Any:
    """`schema` with local `$ref`s followed and `allOf` merged into one dict."""
    for _ in range(32):  # a ref chain longer than this is a cycle
        if not isinstance(schema, dict) or "$ref" not in schema:
            break
        target = _pointer(root, schema["$ref"])
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        schema = _merge(target, siblings) if siblings else target
    if isinstance(schema, dict) and "allOf" in schema:
        merged = {key: value for key, value in schema.items() if key != "allOf"}
        for part in schema["allOf"]:
            merged = _merge(merged, _resolve(part, root))
        return merged
    return schema


def _pointer(root: Any, ref: str) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}  # remote refs are out of scope: treat as "anything"
    node = root
    for raw in filter(None, ref[1:].split("/")):
        key = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node.get(key, {})
    return node


def _merge(base: Any, extra: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(extra, dict):
        return base if isinstance(base, dict) else extra
    merged = dict(base)
    for key, value in extra.items():
        if key == "properties":
            merged["properties"] = {**merged.get("properties", {}), **value}
        elif key == "required":
            merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
        else:
            merged.setdefault(key, value)
    return merged


def _types(schema: dict) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return declared
    if {"properties", "required", "additionalProperties"} & schema.keys():
        return ["object"]
    if {"items", "prefixItems", "minItems"} & schema.keys():
        return ["array"]
    return []


def _branches(schema: dict) -> list | None:
    return schema.get("anyOf") or schema.get("oneOf")


# --- valid values --------------------------------------------------------------------


def _valid(schema: Any, *, root: Any, name: str, index: int, refs: tuple[str, ...]) -> Any:
    lean = False
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if isinstance(ref, str):
        if len(refs) >= MAX_REFS:
            return {}  # a required self-reference: no finite value exists
        lean, refs = ref in refs, (*refs, ref)
    schema = _resolve(schema, root)
    if schema is True or not isinstance(schema, dict):
        return _string({}, name, index)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    branches = _branches(schema)
    if branches:
        chosen = next((b for b in branches if _types(_resolve(b, root)) != ["null"]), branches[0])
        return _valid(chosen, root=root, name=name, index=index, refs=refs)
    types = _types(schema)
    kind = next((t for t in types if t != "null"), "null" if types else "string")
    if kind == "object":
        return _object(schema, root=root, refs=refs, lean=lean)
    if kind == "array":
        return _array(schema, root=root, name=name, refs=refs, lean=lean)
    if kind == "integer":
        return _integer(schema, index)
    if kind == "number":
        return _number(schema)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name, index)


def _object(schema: dict, *, root: Any, refs: tuple[str, ...], lean: bool) -> dict:
    properties = schema.get("properties") or {}
    required = schema.get("required") or []
    names = [n for n in properties if n in required] if lean else list(properties)
    names += [n for n in required if n not in properties]
    extra = schema.get("additionalProperties", True)
    value = {}
    for prop in names:
        sub = properties.get(prop, extra if isinstance(extra, dict) else {})
        value[prop] = _valid(sub, root=root, name=prop, index=0, refs=refs)
    return value


def _array(schema: dict, *, root: Any, name: str, refs: tuple[str, ...], lean: bool) -> list:
    prefix = schema.get("prefixItems")
    items = schema.get("items", {})
    if isinstance(items, list):  # draft 4-7 tuples
        prefix, items = items, schema.get("additionalItems", {})
    prefix = prefix or []
    count = max(schema.get("minItems", 0), len(prefix), 0 if lean else 1)
    if "maxItems" in schema:
        count = min(count, schema["maxItems"])
    if items is False:
        count = min(count, len(prefix))
    return [
        _valid(prefix[i] if i < len(prefix) else items, root=root, name=name, index=i, refs=refs)
        for i in range(count)
    ]


def _string(schema: dict, name: str, index: int) -> str:
    if schema.get("format") in FORMAT_VALUES:
        return FORMAT_VALUES[schema["format"]]
    text = f"sample {name}".strip() if name else "sample"
    if index:
        text = f"{text} {index + 1}"  # items of one array differ (uniqueItems)
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if len(text) < low:
        text += "x" * (low - len(text))
    if high is not None and len(text) > high:
        text = text[:high]
    return text


def _bounds(schema: dict) -> tuple[float | None, bool, float | None, bool]:
    """(low, low exclusive, high, high exclusive), reading both draft 4 and 2020-12 styles."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_ex = high_ex = False
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if ex_low is True:
        low_ex = True
    elif _is_number(ex_low) and (low is None or ex_low >= low):
        low, low_ex = ex_low, True
    if ex_high is True:
        high_ex = True
    elif _is_number(ex_high) and (high is None or ex_high <= high):
        high, high_ex = ex_high, True
    return low, low_ex, high, high_ex


def _integer(schema: dict, index: int) -> int:
    low, low_ex, high, high_ex = _bounds(schema)
    smallest = None if low is None else math.floor(low) + 1 if low_ex else math.ceil(low)
    largest = None if high is None else math.ceil(high) - 1 if high_ex else math.floor(high)
    value = 1 + index
    if smallest is not None and value < smallest:
        value = smallest + index
    if largest is not None and value > largest:
        value = largest
    step = schema.get("multipleOf")
    if _is_number(step) and step > 0 and step == int(step):
        step = int(step)
        value = -(-value // step) * step  # the next multiple up
        if largest is not None and value > largest:
            value = largest // step * step
    return value


def _number(schema: dict) -> float | int:
    low, low_ex, high, high_ex = _bounds(schema)
    step = schema.get("multipleOf")
    if _is_number(step) and step > 0:
        start = low if low is not None else step
        value = math.ceil(start / step) * step
        if low_ex and value <= low:
            value += step
        return int(value) if float(value).is_integer() else value
    if low is not None and high is not None:
        return (low + high) / 2 if low != high else low
    if low is not None:
        return low + 1 if low_ex else max(low, 1.5)
    if high is not None:
        return high - 1 if high_ex else min(high, 1.5)
    return 1.5


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- invalid values ------------------------------------------------------------------


def _invalid(schema: Any, *, root: Any, depth: int) -> Any:
    schema = _resolve(schema, root)
    if schema is False:
        return "anything"
    if schema is True or not isinstance(schema, dict) or depth > MAX_REFS:
        raise _Unviolable
    if "const" in schema:
        return "not the constant" if schema["const"] != "not the constant" else 0
    if schema.get("enum"):
        return _outside(schema["enum"])
    branches = _branches(schema)
    if branches:
        allowed: set[str] = set()
        for branch in branches:
            branch_types = _types(_resolve(branch, root))
            if not branch_types:
                raise _Unviolable
            allowed.update(branch_types)
        return _wrong_type(allowed)
    types = _types(schema)
    if types == ["object"]:
        return _invalid_object(schema, root=root, depth=depth)
    if types:
        return _wrong_type(set(types))
    raise _Unviolable


def _invalid_object(schema: dict, *, root: Any, depth: int) -> Any:
    value = _object(schema, root=root, refs=(), lean=False)
    for name in schema.get("required") or []:
        if name in value:
            del value[name]
            return value
    for name, sub in (schema.get("properties") or {}).items():
        try:
            value[name] = _invalid(sub, root=root, depth=depth + 1)
        except _Unviolable:
            continue
        return value
    if schema.get("additionalProperties") is False:
        value["unexpected_property"] = True
        return value
    # Every object fits. Not a string: some readers take string arguments as encoded JSON.
    return ["not", "an", "object"]


def _wrong_type(allowed: set[str]) -> Any:
    if "number" in allowed:
        allowed = allowed | {"integer"}
    for value, satisfies in _WRONG_TYPE_VALUES:
        if not satisfies & allowed:
            return value
    raise _Unviolable


def _outside(enum: list) -> Any:
    for candidate in ("not one of the allowed values", -1, None):
        if candidate not in enum:
            return candidate
    raise _Unviolable

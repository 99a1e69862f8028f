"""The simulator makes JSON values from JSON Schemas: valid ones a validator accepts, and
(for the fault knobs) invalid ones it rejects."""

from __future__ import annotations

import datetime
import enum
from typing import Annotated, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from pools.simulator.instances import invalid_instance, valid_instance

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city"],
    "additionalProperties": False,
}

HAND_WRITTEN = {
    "weather": WEATHER,
    "const": {"type": "object", "properties": {"kind": {"const": "event"}}, "required": ["kind"]},
    "formats": {
        "type": "object",
        "properties": {
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "date-time"},
            "mail": {"type": "string", "format": "email"},
            "id": {"type": "string", "format": "uuid"},
        },
        "required": ["day", "at", "mail", "id"],
    },
    "bounds": {
        "type": "object",
        "properties": {
            "above_ten": {"type": "integer", "exclusiveMinimum": 10},
            "negative": {"type": "integer", "maximum": -5},
            "fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "big": {"type": "number", "minimum": 100},
            "even": {"type": "integer", "minimum": 3, "multipleOf": 2},
            "draft4": {"type": "number", "minimum": 5, "exclusiveMinimum": True},
        },
        "required": ["above_ten", "negative", "fraction", "big", "even"],
    },
    "lengths": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "minLength": 20},
            "tag": {"type": "string", "maxLength": 3},
        },
        "required": ["code", "tag"],
    },
    "array": {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 3,
                "uniqueItems": True,
            },
            "ids": {
                "type": "array",
                "items": {"type": "integer"},
                "minItems": 2,
                "uniqueItems": True,
            },
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "integer"}],
                "items": False,
            },
        },
        "required": ["tags", "ids", "pair"],
    },
    "nullable list": {
        "type": "object",
        "properties": {
            "note": {"type": ["string", "null"]},
            "flag": {"type": "boolean"},
            "nothing": {"type": "null"},
        },
        "required": ["note", "flag", "nothing"],
        "additionalProperties": False,
    },
    "any of": {
        "type": "object",
        "properties": {"when": {"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}]}},
        "required": ["when"],
    },
    "definitions": {
        "definitions": {
            "point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}
        },
        "type": "object",
        "properties": {"origin": {"$ref": "#/definitions/point"}},
        "required": ["origin"],
    },
    "all of": {
        "$defs": {
            "base": {
                "type": "object",
                "properties": {"id": {"type": "integer"}},
                "required": ["id"],
            }
        },
        "allOf": [
            {"$ref": "#/$defs/base"},
            {"properties": {"name": {"type": "string"}}, "required": ["name"]},
        ],
    },
    "no parameters": {"type": "object", "properties": {}},
    "required without properties": {"type": "object", "required": ["anything"]},
}


class Unit(str, enum.Enum):  # noqa: UP042 - the (str, Enum) idiom clients write; StrEnum changes str() of members
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class Address(BaseModel):
    street: str
    city: str
    postcode: str | None = None


class Person(BaseModel):
    name: str
    age: Annotated[int, Field(ge=0, le=130)]
    score: Annotated[float, Field(gt=0, lt=1)]
    born: datetime.date
    seen_at: datetime.datetime
    unit: Unit
    mood: Literal["happy", "sad"]
    addresses: Annotated[list[Address], Field(min_length=2)]
    nickname: str | None
    tags: list[str] = []


class Node(BaseModel):
    label: str
    children: list[Node] = []
    parent: Node | None = None


class Cat(BaseModel):
    pet_type: Literal["cat"]
    meows: int


class Dog(BaseModel):
    pet_type: Literal["dog"]
    barks: float


class Owner(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="pet_type")]
    backup: Cat | Dog | None = None


class Strict(BaseModel):
    model_config = {"extra": "forbid"}
    query: str
    limit: int


PYDANTIC = {model.__name__: model.model_json_schema() for model in (Person, Node, Owner, Strict)}
SCHEMAS = {**HAND_WRITTEN, **PYDANTIC}


def validator(schema):
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
def test_valid_instance_validates(schema):
    value = valid_instance(schema)

    validator(schema).validate(value)
    assert valid_instance(schema) == value  # deterministic


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
def test_invalid_instance_is_rejected(schema):
    value = invalid_instance(schema)

    assert not validator(schema).is_valid(value)


def test_values_are_what_a_reader_expects():
    assert valid_instance(WEATHER) == {"city": "sample city", "unit": "celsius", "days": 1}
    dates = valid_instance(HAND_WRITTEN["formats"])
    assert datetime.date.fromisoformat(dates["day"])
    assert datetime.datetime.fromisoformat(dates["at"]).tzinfo is not None  # RFC 3339


def test_nullable_fields_take_the_non_null_branch():
    person = valid_instance(PYDANTIC["Person"])

    assert isinstance(person["nickname"], str)
    assert len(person["addresses"]) == 2 and person["addresses"][0]["city"] == "sample city"


def test_invalid_object_leaves_out_the_first_required_property():
    assert invalid_instance(WEATHER) == {"unit": "celsius", "days": 1}


def test_recursive_models_stop_at_the_first_repeat():
    node = valid_instance(PYDANTIC["Node"])

    assert node["children"] == [{"label": "sample label"}]
    assert node["parent"] == {"label": "sample label"}


def test_a_schema_that_accepts_anything_gets_a_non_object():
    assert not isinstance(invalid_instance({}), dict)

"""Tool calls in each family's syntax: written into prompts, read back from answers, whole
or split anywhere across a stream's chunks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import outputs, toolcalls
from gateway.conversation import OutputFormat, Tool, ToolChoice
from gateway.validation import InferenceRequest

FAMILIES = ["chatml", "plain", "llama3", "gemma"]
WEATHER = Tool(
    name="get_weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    strict=True,
)


def answer(family: str, *calls: tuple[str, dict], before: str = "", after: str = "") -> str:
    syntax = toolcalls.syntax_for(family)
    written = "\n".join(syntax.render(name, json.dumps(args)) for name, args in calls)
    return f"{before}\n{written}\n{after}" if calls else before + after


@pytest.mark.parametrize("family", FAMILIES)
def test_calls_written_by_a_family_are_read_back(family):
    text = answer(
        family, ("get_weather", {"city": "Paris"}), ("get_time", {}), before="Let me check."
    )
    content, found = toolcalls.parse(text, toolcalls.syntax_for(family))
    assert content == "Let me check."
    assert [(f.name, json.loads(f.arguments), f.error) for f in found] == [
        ("get_weather", {"city": "Paris"}, None),
        ("get_time", {}, None),
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_text_without_a_call_passes_unchanged(family):
    text = "A < B, ``` code ``` and <b>bold</b>, function=f.\n\n  "
    assert toolcalls.parse(text, toolcalls.syntax_for(family)) == (text, [])


@pytest.mark.parametrize(
    ("family", "text", "error"),
    [
        (
            "chatml",
            '<tool_call>\n{"name": "f", "arguments": {"a": 1}\n</tool_call>',
            "not valid JSON",
        ),
        ("chatml", '<tool_call>\n{"name": "f", "arguments": {"a": 1}}', "not closed"),
        ("chatml", '<tool_call>{"arguments": {}}</tool_call>', '"name"'),
        ("llama3", "<function=f>[1, 2]</function>", "not a JSON object"),
        ("llama3", "<function=>{}</function>", "names no function"),
        ("gemma", '```tool_call\n{"name": "f", "arguments": "{oops"}\n```', "not valid JSON"),
    ],
)
def test_a_malformed_call_is_reported_not_dropped(family, text, error):
    _, found = toolcalls.parse(text, toolcalls.syntax_for(family))
    assert len(found) == 1 and error in found[0].error


def split_points(size: int):
    return st.lists(st.integers(min_value=0, max_value=size), max_size=12).map(sorted)


@settings(max_examples=300, deadline=None)
@given(
    family=st.sampled_from(FAMILIES),
    before=st.sampled_from(["", "Sure.", "I'll look <that> up ``` now", "  \n"]),
    after=st.sampled_from(["", "Done.", "\n\n", "more <tool"]),
    city=st.text(min_size=0, max_size=12),
    two=st.booleans(),
    cuts=st.data(),
)
def test_a_stream_split_anywhere_reads_like_the_whole_answer(
    family, before, after, city, two, cuts
):
    calls = [("get_weather", {"city": city})] + ([("get_time", {"zone": "UTC"})] if two else [])
    text = answer(family, *calls, before=before, after=after)
    syntax = toolcalls.syntax_for(family)
    points = cuts.draw(split_points(len(text)))
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]

    scanner = toolcalls.CallScanner(syntax)
    streamed_text, streamed_calls = [], []
    for piece in pieces:
        out, found = scanner.feed(piece)
        streamed_text.append(out)
        streamed_calls += found
    out, found = scanner.flush()
    streamed_text.append(out)
    streamed_calls += found

    assert ("".join(streamed_text), streamed_calls) == toolcalls.parse(text, syntax)
    assert [(c.name, json.loads(c.arguments)) for c in streamed_calls] == [(n, a) for n, a in calls]


def request(**fields) -> InferenceRequest:
    return InferenceRequest(
        kind="chat", model="m", messages=[{"role": "user", "content": "hi"}], **fields
    )


def test_strict_arguments_are_checked_against_the_schema():
    req = request(tools=[WEATHER])
    good = outputs.read(answer("chatml", ("get_weather", {"city": "Oslo"})), req, template="chatml")
    assert good.problem is None and good.calls[0].id.startswith("call_")
    bad = outputs.read(answer("chatml", ("get_weather", {"town": "Oslo"})), req, template="chatml")
    assert "'city' is a required property" in bad.problem
    unknown = outputs.read(answer("chatml", ("launch", {})), req, template="chatml")
    assert "does not exist" in unknown.problem


def test_the_tool_choice_is_checked():
    text_only = "It is sunny."
    assert (
        "called none"
        in outputs.read(
            text_only,
            request(tools=[WEATHER], tool_choice=ToolChoice("required")),
            template="chatml",
        ).problem
    )
    assert outputs.read(text_only, request(tools=[WEATHER]), template="chatml").problem is None
    other = Tool(name="get_time")
    named = request(tools=[WEATHER, other], tool_choice=ToolChoice("function", "get_time"))
    assert (
        "may only call"
        in outputs.read(
            answer("chatml", ("get_weather", {"city": "x"})), named, template="chatml"
        ).problem
    )
    two = answer("chatml", ("get_weather", {"city": "x"}), ("get_weather", {"city": "y"}))
    assert (
        "at most one"
        in outputs.read(
            two, request(tools=[WEATHER], parallel_tool_calls=False), template="chatml"
        ).problem
    )
    # tool_choice none: the answer is read as text, markers and all
    none = request(tools=[WEATHER], tool_choice=ToolChoice("none"))
    assert outputs.read(two, none, template="chatml").text == two


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"a": 1}', None),
        ('```json\n{"a": 1}\n```', None),
        ('  {"a": 1}\n', None),
        ("[1]", "not an object"),
        ('Sure! {"a": 1}', "not valid JSON"),
    ],
)
def test_json_output_is_unfenced_and_checked(text, problem):
    reading = outputs.read(
        text, request(output=OutputFormat(kind="json_object")), template="chatml"
    )
    assert reading.problem == problem or problem in reading.problem
    if problem is None:
        assert json.loads(reading.text) == {"a": 1}


def test_a_strict_schema_is_enforced_and_a_loose_one_is_best_effort():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    strict = request(output=OutputFormat(kind="json_schema", schema=schema, name="s", strict=True))
    loose = request(output=OutputFormat(kind="json_schema", schema=schema, name="s", strict=False))
    assert (
        "'a' is a required property" in outputs.read('{"b": 1}', strict, template="chatml").problem
    )
    assert outputs.read('{"b": 1}', loose, template="chatml").problem is None

"""The simulator answers tool definitions with calls in the family's syntax and output
formats with JSON, through its HTTP API, and spoils them on request (`tool_mode`,
`json_mode`, `fault_count`)."""

from __future__ import annotations

import json
import math
import re

import jsonschema
import pytest
from django.core.management import call_command

from pools.management.commands import simulate_router

FAMILIES = ("chatml", "gemma", "llama3", "plain")

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "when": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
}
CLOCK = {
    "name": "get_time",
    "description": "Current time in a timezone.",
    "parameters": {
        "type": "object",
        "properties": {
            "timezone": {"type": "string"},
            "offset": {"type": "integer", "minimum": -12, "maximum": 14},
        },
        "required": ["timezone", "offset"],
    },
}
TOOLS = {tool["name"]: tool for tool in (WEATHER, CLOCK)}
REPORT = {
    "type": "object",
    "$defs": {
        "Day": {
            "type": "object",
            "properties": {
                "date": {"type": "string", "format": "date"},
                "high": {"type": "number"},
            },
            "required": ["date", "high"],
        }
    },
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "array", "items": {"$ref": "#/$defs/Day"}, "minItems": 2},
        "summary": {"type": ["string", "null"]},
    },
    "required": ["city", "days", "summary"],
    "additionalProperties": False,
}

# The instructions as the gateway words them (copied: pools does not import gateway).
_XML_INSTRUCTION = (
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)
CALL_INSTRUCTION = {
    "chatml": _XML_INSTRUCTION,
    "plain": _XML_INSTRUCTION,
    "llama3": "To call a function, reply with <function=FUNCTION_NAME>{ARGUMENTS_AS_JSON}"
    "</function>, one such tag per call.",
    "gemma": "To call a function, reply with a ```tool_call fenced block holding a json object "
    "with function name and arguments:\n"
    '```tool_call\n{"name": <function-name>, "arguments": <args-json-object>}\n```',
}


# --- prompts as the gateway renders them ---------------------------------------------


def tool_block(family, tools, choice=""):
    lines = "\n".join(json.dumps({"type": "function", "function": tool}) for tool in tools)
    text = (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{lines}\n</tools>\n\n{CALL_INSTRUCTION[family]}"
    )
    return f"{text}\n{choice}" if choice else text


def format_block(schema=None):
    text = (
        "# Output format\n\n"
        "Respond with a single JSON object and nothing else: no prose, no code fences."
    )
    if schema is not None:
        text += (
            "\nThe object must match this JSON Schema:\n"
            f"<json_schema>\n{json.dumps(schema, indent=2)}\n</json_schema>"
        )
    return text


def call_text(family, name, arguments):
    if family == "llama3":
        return f"<function={name}>{json.dumps(arguments)}</function>"
    body = json.dumps({"name": name, "arguments": arguments})
    if family == "gemma":
        return f"```tool_call\n{body}\n```"
    return f"<tool_call>\n{body}\n</tool_call>"


def render(family, system, turns):
    """`turns`: ("user" | "assistant", text) or ("tool", [results]) after an assistant call."""
    if family == "chatml":
        out = [f"<|im_start|>system\n{system}<|im_end|>\n"]
        for role, content in turns:
            if role == "tool":
                role = "user"
                content = "\n".join(f"<tool_response>\n{r}\n</tool_response>" for r in content)
            out.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
        return "".join(out) + "<|im_start|>assistant\n"
    if family == "gemma":
        out, pending = [], system
        for role, content in turns:
            if role == "tool":
                role = "user"
                content = "\n".join(f"```tool_response\n{r}\n```" for r in content)
            if role == "user" and pending:
                content, pending = f"{pending}\n\n{content}", ""
            out.append(
                f"<start_of_turn>{'model' if role == 'assistant' else 'user'}\n"
                f"{content}<end_of_turn>\n"
            )
        return "".join(out) + "<start_of_turn>model\n"
    if family == "llama3":
        out = [f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"]
        for role, content in turns:
            for text in content if role == "tool" else [content]:
                header = "ipython" if role == "tool" else role
                out.append(f"<|start_header_id|>{header}<|end_header_id|>\n\n{text}<|eot_id|>")
        return "".join(out) + "<|start_header_id|>assistant<|end_header_id|>\n\n"
    out = [f"System: {system}"]
    for role, content in turns:
        if role == "tool":
            role = "user"
            content = "\n".join(f"<tool_response>\n{r}\n</tool_response>" for r in content)
        out.append(f"{role.capitalize()}: {content}")
    return "\n\n".join([*out, "Assistant:"])


def tools_prompt(family, *, tools=(WEATHER, CLOCK), choice="", result=None, schema_block=""):
    system = "You are a helpful assistant.\n\n" + tool_block(family, tools, choice)
    if schema_block:
        system += "\n\n" + schema_block
    turns = [("user", "What is the weather in Paris?")]
    if result is not None:
        turns += [
            ("assistant", call_text(family, "get_weather", {"city": "Paris"})),
            ("tool", result),
        ]
    return render(family, system, turns)


def json_prompt(family, schema=None):
    system = "You are a helpful assistant.\n\n" + format_block(schema)
    return render(family, system, [("user", "Describe the weather in Paris.")])


# --- reading answers as the gateway would --------------------------------------------

_CALLS = {
    "chatml": re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.DOTALL),
    "plain": re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.DOTALL),
    "gemma": re.compile(r"```tool_call\n(.*?)\n```", re.DOTALL),
    "llama3": re.compile(r"<function=([^>]+)>(.*?)</function>", re.DOTALL),
}


def raw_calls(family, text) -> list[tuple[str | None, str]]:
    """(name, JSON text) per call; the name is inside the JSON except for llama3."""
    if family == "llama3":
        return _CALLS[family].findall(text)
    return [(None, body) for body in _CALLS[family].findall(text)]


def parsed_calls(family, text) -> list[tuple[str, dict]]:
    calls = []
    for name, body in raw_calls(family, text):
        data = json.loads(body)
        calls.append((name, data) if name else (data["name"], data["arguments"]))
    return calls


def is_valid(schema, value) -> bool:
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER).is_valid(value)


def ask(http, url, prompt, *, stream=False, **body):
    """The answer's text and usage (and finish_reason), whole or reassembled from a stream."""
    payload = {"session_id": 1, "prompt": prompt, "stream": stream, **body}
    response = http.post(url + "/api/v1/completions", json=payload, timeout=10)
    assert response.status_code == 200, response.text
    if not stream:
        data = response.json()
        return data["choices"][0]["text"], data["usage"], data["choices"][0]["finish_reason"]
    events = [
        json.loads(line[6:])
        for line in response.iter_lines()
        if line.startswith(b"data: ") and line != b"data: [DONE]"
    ]
    text = "".join(event["choices"][0]["text"] for event in events)
    return text, events[-1]["usage"], events[-1]["choices"][0]["finish_reason"]


def stats(http, url):
    return http.get(url + "/_sim/stats", timeout=5).json()


# --- tool calls ----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("family", FAMILIES)
def test_tools_get_one_schema_valid_call_in_the_family_syntax(simulator, http, family, stream):
    url = simulator()
    prompt = tools_prompt(family)

    text, usage, finish = ask(http, url, prompt, stream=stream)

    [(name, arguments)] = parsed_calls(family, text)
    assert name == "get_weather"
    assert is_valid(WEATHER["parameters"], arguments)
    assert text == call_text(family, name, arguments)  # nothing around the call
    assert usage["completion_tokens"] == math.ceil(len(text) / 4)
    assert usage["prompt_tokens"] == math.ceil(len(prompt) / 4)
    assert finish == "stop"
    assert stats(http, url)["tool_call_answers"] == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_a_stream_sends_the_same_call_split_into_tokens(simulator, http, family):
    url = simulator()
    prompt = tools_prompt(family)

    whole, _, _ = ask(http, url, prompt)
    response = http.post(
        url + "/api/v1/completions",
        timeout=10,
        json={"session_id": 1, "prompt": prompt, "stream": True},
    )
    pieces = [
        json.loads(line[6:])["choices"][0]["text"]
        for line in response.iter_lines()
        if line.startswith(b"data: ") and line != b"data: [DONE]"
    ]

    assert len(pieces) > 5  # the call markers arrive split over several chunks
    assert "".join(pieces) == whole


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("family", FAMILIES)
def test_after_a_tool_result_the_answer_quotes_it(simulator, http, family, stream):
    url = simulator()
    result = json.dumps({"temperature": 21, "sky": "clear"})

    text, usage, _ = ask(http, url, tools_prompt(family, result=[result]), stream=stream)

    assert text == f"The tool said: {result}"
    assert parsed_calls(family, text) == []
    assert usage["completion_tokens"] == math.ceil(len(text) / 4)
    counts = stats(http, url)
    assert (counts["tool_result_answers"], counts["tool_call_answers"]) == (1, 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_several_results_are_all_quoted_and_long_ones_cut(simulator, http, family):
    url = simulator()
    long_result = "x" * 200

    text, _, _ = ask(http, url, tools_prompt(family, result=["sunny", long_result]))

    assert text == f"The tool said: sunny\nThe tool said: {'x' * 80}"


@pytest.mark.parametrize("family", FAMILIES)
def test_a_named_function_is_the_one_called(simulator, http, family):
    url = simulator()
    prompt = tools_prompt(family, choice='You must call the function "get_time".')

    [(name, arguments)] = parsed_calls(family, ask(http, url, prompt)[0])

    assert name == "get_time"
    assert is_valid(CLOCK["parameters"], arguments)


@pytest.mark.parametrize("family", FAMILIES)
def test_must_call_after_a_tool_result_calls_the_last_tool(simulator, http, family):
    """Agent frameworks put their final-answer tool last and require a call: the loop ends."""
    url = simulator()
    prompt = tools_prompt(family, choice="You must call at least one function.", result=["ok"])

    [(name, _)] = parsed_calls(family, ask(http, url, prompt)[0])

    assert name == "get_time"


@pytest.mark.parametrize("family", FAMILIES)
def test_parallel_calls_cycle_through_tools_unless_at_most_one(simulator, http, family):
    url = simulator(parallel_calls=3)

    several = parsed_calls(family, ask(http, url, tools_prompt(family))[0])
    single = parsed_calls(
        family, ask(http, url, tools_prompt(family, choice="Call at most one function."))[0]
    )

    assert [name for name, _ in several] == ["get_weather", "get_time", "get_weather"]
    assert all(is_valid(TOOLS[name]["parameters"], args) for name, args in several)
    assert [name for name, _ in single] == ["get_weather"]


def test_max_tokens_cuts_a_call_with_finish_reason_length(simulator, http):
    url = simulator()

    text, usage, finish = ask(http, url, tools_prompt("chatml"), max_tokens=5)

    assert (len(text), usage["completion_tokens"], finish) == (20, 5, "length")
    assert text.startswith("<tool_call>\n")


# --- tool faults ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("family", FAMILIES)
def test_tool_mode_text_answers_prose_instead_of_a_call(simulator, http, family, stream):
    url = simulator(tool_mode="text", completion_tokens=6)

    text, usage, _ = ask(http, url, tools_prompt(family), stream=stream)

    assert raw_calls(family, text) == [] and "tool_call" not in text
    assert len(text.split()) == 6 and usage["completion_tokens"] == 6
    assert stats(http, url)["answer_faults_injected"] == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("family", FAMILIES)
def test_tool_mode_malformed_keeps_the_markers_but_breaks_the_json(simulator, http, family, stream):
    url = simulator(tool_mode="malformed")

    text, _, _ = ask(http, url, tools_prompt(family), stream=stream)

    [(name, body)] = raw_calls(family, text)
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    assert name in (None, "get_weather")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("family", FAMILIES)
def test_tool_mode_invalid_args_breaks_the_schema_not_the_json(simulator, http, family, stream):
    url = simulator(tool_mode="invalid_args")

    [(name, arguments)] = parsed_calls(
        family, ask(http, url, tools_prompt(family), stream=stream)[0]
    )

    assert name == "get_weather"
    assert not is_valid(WEATHER["parameters"], arguments)
    assert "city" not in arguments  # the first required property is left out


def test_tool_mode_leaves_the_answer_after_a_tool_result_alone(simulator, http):
    url = simulator(tool_mode="malformed")

    text, _, _ = ask(http, url, tools_prompt("chatml", result=["sunny"]))

    assert text == "The tool said: sunny"
    assert stats(http, url)["answer_faults_injected"] == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_fault_count_spoils_only_the_first_answers(simulator, http, family):
    url = simulator(tool_mode="malformed", fault_count=1)
    prompt = tools_prompt(family)

    first, _, _ = ask(http, url, prompt)
    second, _, _ = ask(http, url, prompt, stream=True)
    third, _, _ = ask(http, url, prompt)

    with pytest.raises(json.JSONDecodeError):
        parsed_calls(family, first)
    assert parsed_calls(family, second) == parsed_calls(family, third)
    [(name, arguments)] = parsed_calls(family, second)
    assert name == "get_weather" and is_valid(WEATHER["parameters"], arguments)
    counts = stats(http, url)
    assert (counts["tool_call_answers"], counts["answer_faults_injected"]) == (3, 1)


def test_setting_fault_knobs_live_starts_a_fresh_budget(simulator, http):
    url = simulator()
    prompt = tools_prompt("chatml")

    changed = http.post(
        url + "/_sim/config", json={"tool-mode": "invalid_args", "fault_count": 2}, timeout=5
    )
    answers = [parsed_calls("chatml", ask(http, url, prompt)[0])[0][1] for _ in range(3)]
    http.post(url + "/_sim/config", json={"fault_count": 1}, timeout=5)
    again = [parsed_calls("chatml", ask(http, url, prompt)[0])[0][1] for _ in range(2)]

    assert changed.json()["config"]["tool_mode"] == "invalid_args"
    assert [is_valid(WEATHER["parameters"], a) for a in answers] == [False, False, True]
    assert [is_valid(WEATHER["parameters"], a) for a in again] == [False, True]


def test_fault_count_zero_never_spoils_and_reset_restores_the_budget(simulator, http):
    url = simulator(tool_mode="text", fault_count=0)
    prompt = tools_prompt("llama3")

    assert parsed_calls("llama3", ask(http, url, prompt)[0])
    http.post(url + "/_sim/config", json={"fault_count": 1}, timeout=5)
    assert not parsed_calls("llama3", ask(http, url, prompt)[0])
    assert parsed_calls("llama3", ask(http, url, prompt)[0])
    http.post(url + "/_sim/reset", timeout=5)
    assert not parsed_calls("llama3", ask(http, url, prompt)[0])


@pytest.mark.parametrize(
    "knobs",
    [
        {"tool_mode": "sometimes"},
        {"json_mode": "yaml"},
        {"fault_count": -2},
        {"fault_count": "1"},
        {"parallel_calls": 0},
    ],
)
def test_bad_tool_knobs_are_refused(simulator, http, knobs):
    url = simulator()

    response = http.post(url + "/_sim/config", json=knobs, timeout=5)

    assert response.status_code == 400
    assert next(iter(knobs)) in response.json()["error"]


# --- JSON answers --------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("family", FAMILIES)
def test_a_schema_gets_a_valid_object(simulator, http, family, stream):
    url = simulator()

    text, usage, _ = ask(http, url, json_prompt(family, REPORT), stream=stream)

    value = json.loads(text)
    assert is_valid(REPORT, value)
    assert len(value["days"]) == 2
    assert usage["completion_tokens"] == math.ceil(len(text) / 4)
    assert stats(http, url)["json_answers"] == 1


@pytest.mark.parametrize("family", FAMILIES)
def test_json_object_without_a_schema_gets_an_answer_object(simulator, http, family):
    url = simulator()

    value = json.loads(ask(http, url, json_prompt(family))[0])

    assert list(value) == ["answer"] and value["answer"]


@pytest.mark.parametrize("family", FAMILIES)
def test_tools_and_a_format_answer_a_tool_result_with_json(simulator, http, family):
    url = simulator()
    prompt = tools_prompt(family, result=["sunny"], schema_block=format_block(REPORT))

    before_the_call = tools_prompt(family, schema_block=format_block())

    assert is_valid(REPORT, json.loads(ask(http, url, prompt)[0]))
    assert parsed_calls(family, ask(http, url, before_the_call)[0])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_json_mode_fenced_wraps_a_valid_object(simulator, http, stream):
    url = simulator(json_mode="fenced")

    text, _, _ = ask(http, url, json_prompt("gemma", REPORT), stream=stream)

    assert text.startswith("```json\n") and text.endswith("\n```")
    assert is_valid(REPORT, json.loads(text.removeprefix("```json\n").removesuffix("\n```")))


@pytest.mark.parametrize("schema", [REPORT, None], ids=["json_schema", "json_object"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_json_mode_invalid_json_does_not_parse(simulator, http, stream, schema):
    url = simulator(json_mode="invalid_json")

    text, _, _ = ask(http, url, json_prompt("chatml", schema), stream=stream)

    assert text.startswith("{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_json_mode_schema_violation_parses_but_breaks_the_schema(simulator, http, stream):
    url = simulator(json_mode="schema_violation")

    text, _, _ = ask(http, url, json_prompt("llama3", REPORT), stream=stream)

    value = json.loads(text)
    assert isinstance(value, dict) and not is_valid(REPORT, value)


def test_json_mode_schema_violation_without_a_schema_is_not_an_object(simulator, http):
    url = simulator(json_mode="schema_violation")

    value = json.loads(ask(http, url, json_prompt("plain"))[0])

    assert not isinstance(value, dict)


def test_json_fault_count_spoils_only_the_first_answer(simulator, http):
    url = simulator(json_mode="schema_violation", fault_count=1)
    prompt = json_prompt("chatml", REPORT)

    answers = [json.loads(ask(http, url, prompt)[0]) for _ in range(2)]

    assert [is_valid(REPORT, value) for value in answers] == [False, True]
    counts = stats(http, url)
    assert (counts["json_answers"], counts["answer_faults_injected"]) == (2, 1)


def test_json_mode_leaves_tool_calls_alone(simulator, http):
    url = simulator(json_mode="invalid_json", fault_count=1)

    call = parsed_calls("chatml", ask(http, url, tools_prompt("chatml"))[0])
    value = ask(http, url, json_prompt("chatml", REPORT))[0]

    assert call and call[0][0] == "get_weather"
    with pytest.raises(json.JSONDecodeError):
        json.loads(value)  # the budget was still there for the first JSON answer


# --- prompts that ask for neither ----------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        "User: what are <tools> in XML?\n\nAssistant:",
        "<|im_start|>system\nUse <tools>\nnot json\n</tools><|im_end|>\n<|im_start|>assistant\n",
    ],
)
def test_prompts_without_a_tool_block_get_ordinary_text(simulator, http, prompt):
    url = simulator(tool_mode="malformed")

    text, usage, _ = ask(http, url, prompt)

    assert len(text) == 64 and usage["completion_tokens"] == 16
    counts = stats(http, url)
    assert counts["tool_call_answers"] == counts["answer_faults_injected"] == 0


# --- the management command ----------------------------------------------------------


def test_simulate_router_takes_the_tool_and_json_flags(monkeypatch):
    started = []
    monkeypatch.setattr(simulate_router, "run", lambda config, out: started.append(config))

    call_command(
        "simulate_router",
        "--port",
        "0",
        "--tool-mode",
        "invalid_args",
        "--json-mode",
        "fenced",
        "--fault-count",
        "2",
        "--parallel-calls",
        "3",
    )

    [config] = started
    assert (config.tool_mode, config.json_mode, config.fault_count, config.parallel_calls) == (
        "invalid_args",
        "fenced",
        2,
        3,
    )


def test_simulate_router_defaults_answer_well_formed(monkeypatch):
    started = []
    monkeypatch.setattr(simulate_router, "run", lambda config, out: started.append(config))

    call_command("simulate_router", "--port", "0")

    [config] = started
    assert (config.tool_mode, config.json_mode, config.fault_count, config.parallel_calls) == (
        "call",
        "valid",
        -1,
        1,
    )

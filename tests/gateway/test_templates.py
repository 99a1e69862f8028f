"""Prompt templates: golden strings for each template and the system-text rules."""

from __future__ import annotations

import pytest

from gateway.templates import TEMPLATES, render_prompt

CONVERSATION = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
]
WITH_SYSTEM_MESSAGE = [{"role": "system", "content": "Be brief."}, *CONVERSATION]

GOLDEN = {
    "chatml": (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    "gemma": (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\n2+2?<end_of_turn>\n"
        "<start_of_turn>model\n"
    ),
    "llama3": (
        "<|begin_of_text|>"
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "plain": "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: 2+2?\n\nAssistant:",
}

GOLDEN_NO_SYSTEM = {
    "chatml": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "gemma": "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "llama3": (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "plain": "User: Hi\n\nAssistant:",
}


@pytest.mark.parametrize("template", TEMPLATES)
def test_system_message_golden(template):
    assert render_prompt(template, WITH_SYSTEM_MESSAGE) == GOLDEN[template]


@pytest.mark.parametrize("template", TEMPLATES)
def test_separate_system_renders_like_a_system_message(template):
    assert render_prompt(template, CONVERSATION, system="Be brief.") == GOLDEN[template]


@pytest.mark.parametrize("template", TEMPLATES)
def test_no_system_golden(template):
    prompt = render_prompt(template, [{"role": "user", "content": "Hi"}])

    assert prompt == GOLDEN_NO_SYSTEM[template]


@pytest.mark.parametrize("template", TEMPLATES)
def test_all_system_text_goes_first_separate_system_leading(template):
    messages = [
        {"role": "system", "content": "Second."},
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Third."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "2+2?"},
    ]
    expected = GOLDEN[template].replace("Be brief.", "First.\n\nSecond.\n\nThird.")

    assert render_prompt(template, messages, system="First.") == expected


def test_gemma_system_without_a_leading_user_turn_gets_its_own_user_turn():
    messages = [{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Hi"}]

    assert render_prompt("gemma", messages, system="Be brief.") == (
        "<start_of_turn>user\nBe brief.<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nHi<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_gemma_system_only():
    assert render_prompt("gemma", [{"role": "system", "content": "S"}]) == (
        "<start_of_turn>user\nS<end_of_turn>\n<start_of_turn>model\n"
    )


def test_content_is_kept_verbatim():
    text = "  line one\n\nline two  "

    assert render_prompt("chatml", [{"role": "user", "content": text}]) == (
        f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_rendering_leaves_the_messages_untouched():
    messages = [dict(m) for m in WITH_SYSTEM_MESSAGE]

    render_prompt("gemma", messages, system="X")

    assert messages == WITH_SYSTEM_MESSAGE


@pytest.mark.parametrize("template", ["", "ChatML", "mistral", "llama2"])
def test_unknown_template_is_a_value_error(template):
    with pytest.raises(ValueError, match="unknown prompt template"):
        render_prompt(template, CONVERSATION)

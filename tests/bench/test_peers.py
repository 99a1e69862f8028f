"""bench/peers.py's LiteLLM config and environment, and the chat answers bench/upstream.py
gives it (no install, no process, no network)."""

from __future__ import annotations

import json

from bench import peers, upstream


def test_each_model_is_openai_compatible_at_its_bench_upstream():
    config = json.loads(  # JSON is YAML: the proxy's config loader reads it as is
        peers.litellm_config(
            {"bench-slow": "http://127.0.0.1:9002/", "bench-canned": "http://127.0.0.1:9001"}
        )
    )
    assert config["model_list"] == [
        {
            "model_name": "bench-canned",
            "litellm_params": {
                "model": "openai/bench-canned",
                "api_base": "http://127.0.0.1:9001/v1",
                "api_key": "bench-upstream-takes-any-key",
            },
        },
        {
            "model_name": "bench-slow",
            "litellm_params": {
                "model": "openai/bench-slow",
                "api_base": "http://127.0.0.1:9002/v1",
                "api_key": "bench-upstream-takes-any-key",
            },
        },
    ]
    assert config["litellm_settings"]["num_retries"] == 0
    assert "general_settings" not in config  # no database_url: the proxy runs without one


def test_the_proxy_gets_a_clean_environment_with_a_master_key_and_the_local_cost_map():
    env = peers.litellm_env(
        {"PATH": "/usr/bin", "HOME": "/root", "DATABASE_URL": "postgres://x", "REDIS_URL": "r"}
    )
    assert env["PATH"] == "/usr/bin"
    assert env["LITELLM_MASTER_KEY"] == peers.MASTER_KEY
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert "DATABASE_URL" not in env and "REDIS_URL" not in env
    assert peers.WORKERS == 2  # as the Portal's gateway gets


def _body(frames: list[bytes]) -> bytes:
    return b"".join(frames).split(b"\r\n\r\n", 1)[1]


def test_the_upstream_answers_the_chat_api_and_the_router_api_alike():
    answers = upstream.answers(3)
    chat = json.loads(_body(answers[(True, False)]))
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "tok tok tok "}
    router = json.loads(_body(answers[(False, False)]))
    assert router["object"] == "text_completion"
    assert router["choices"][0]["text"] == "tok tok tok "
    assert (
        chat["usage"]
        == router["usage"]
        == {
            "prompt_tokens": 8,
            "completion_tokens": 3,
            "total_tokens": 11,
        }
    )


def test_a_streamed_answer_is_a_head_one_frame_per_token_and_done():
    frames = upstream.answers(3)[(True, True)]
    assert frames[0].startswith(b"HTTP/1.1 200 OK\r\n") and b"chunked" in frames[0]
    assert len(frames) == 1 + 3 + 1  # a paced stream sends one frame per interval
    events = [frame.split(b"\r\n")[1] for frame in frames[1:4]]
    chunks = [json.loads(event[len(b"data: ") :]) for event in events]
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["tok "] * 3
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "usage" in chunks[-1]
    assert frames[-1].endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")

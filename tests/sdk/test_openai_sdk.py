"""The official `openai` Python SDK against the real gateway binary and the mock provider binaries
(one per wire format), run as processes on free loopback ports as a user would run them."""

import openai
import pytest


def client(gw, key=None):
    return openai.OpenAI(base_url=gw["base_url"], api_key=key or gw["key"], max_retries=0)


def test_non_streaming(gateway):
    r = client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello sdk"}]
    )
    assert "hello sdk" in r.choices[0].message.content
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.choices[0].finish_reason == "stop"


def test_streaming_with_and_without_usage(gateway):
    c = client(gateway)
    chunks = list(
        c.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "stream sdk"}], stream=True
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert "stream sdk" in text
    assert all(ch.usage is None for ch in chunks)

    chunks = list(
        c.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "stream sdk"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert chunks[-1].choices == []


def test_errors_map_to_sdk_exceptions(gateway):
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key="gg-not-a-real-key").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.NotFoundError) as e:
        client(gateway).chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.RateLimitError):
        client(gateway).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "[[mock:error=429]]"}]
        )
    with pytest.raises(openai.BadRequestError):
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages=[])


def test_tool_calls_round_trip(gateway):
    r = client(gateway).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "weather? [[mock:tools]]"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    )
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert r.choices[0].finish_reason == "tool_calls"

"""Every provider through the official SDK, and every answer validated against OpenAI's own OpenAPI
description (read from ../shared where it exists; skipped, loudly, where it does not)."""

import json
import os
import urllib.request

import openai
import pytest

from conftest import ROOT

SPEC = os.path.join(os.path.dirname(ROOT), "shared", "reference", "openai-openapi.yaml")

MODELS = ["gpt-4o-mini", "gemini-2.5-flash", "deepseek-chat", "deepseek-reasoner", "grok-3-mini"]


def client(gw):
    return openai.OpenAI(base_url=gw["base_url"], api_key=gw["key"], max_retries=0)


def _nullable_to_type(node):
    """OpenAPI's legacy `nullable: true` becomes a JSON Schema type union."""
    if isinstance(node, dict):
        if node.get("nullable") is True and "type" in node and isinstance(node["type"], str):
            node["type"] = [node["type"], "null"]
            if isinstance(node.get("enum"), list) and None not in node["enum"]:
                node["enum"].append(None)
        elif node.get("nullable") is True and "$ref" in node:
            node["anyOf"] = [{"$ref": node.pop("$ref")}, {"type": "null"}]
        for v in node.values():
            _nullable_to_type(v)
    elif isinstance(node, list):
        for v in node:
            _nullable_to_type(v)


@pytest.fixture(scope="module")
def validator():
    if not os.path.exists(SPEC):
        pytest.skip(f"SKIPPED: OpenAI's OpenAPI file is not at {SPEC}; schema validation did not run")
    import jsonschema
    import yaml

    with open(SPEC) as f:
        spec = yaml.safe_load(f)
    _nullable_to_type(spec)

    def validate(instance, name):
        schema = dict(spec)
        schema["$ref"] = f"#/components/schemas/{name}"
        jsonschema.Draft202012Validator(schema).validate(instance)

    return validate


def raw(gw, path, body=None):
    req = urllib.request.Request(
        gw["base_url"] + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {gw['key']}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.parametrize("model", MODELS)
def test_sdk_text_and_usage(gateway, model):
    r = client(gateway).chat.completions.create(model=model, messages=[{"role": "user", "content": f"hi {model}"}])
    assert f"hi {model}" in r.choices[0].message.content
    u = r.usage
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", MODELS)
def test_sdk_stream(gateway, model):
    chunks = list(
        client(gateway).chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": f"stream {model}"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert f"stream {model}" in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gemini-2.5-flash", "deepseek-chat", "grok-3-mini"])
def test_sdk_tool_calls(gateway, model):
    r = client(gateway).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "weather in Paris? [[mock:tools]]"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    )
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] == "Paris"
    assert r.choices[0].finish_reason == "tool_calls"


def test_sdk_reasoning(gateway):
    r = client(gateway).chat.completions.create(
        model="deepseek-reasoner", messages=[{"role": "user", "content": "think"}]
    )
    assert r.choices[0].message.model_extra.get("reasoning_content")
    assert r.usage.completion_tokens_details.reasoning_tokens > 0
    r = client(gateway).chat.completions.create(
        model="gemini-2.5-flash", reasoning_effort="low", messages=[{"role": "user", "content": "think [[mock:thinking]]"}]
    )
    assert r.choices[0].message.model_extra.get("reasoning_content")
    assert r.usage.completion_tokens > r.usage.completion_tokens_details.reasoning_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_responses_match_openai_schema(gateway, validator, model):
    status, body = raw(gateway, "/chat/completions", {"model": model, "messages": [{"role": "user", "content": "schema"}]})
    assert status == 200, body
    validator(json.loads(body), "CreateChatCompletionResponse")

    status, body = raw(
        gateway,
        "/chat/completions",
        {"model": model, "stream": True, "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "schema stream"}]},
    )
    assert status == 200
    events = [e[len("data: "):] for e in body.split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]"
    for e in events[:-1]:
        validator(json.loads(e), "CreateChatCompletionStreamResponse")


def test_tool_call_answers_match_schema(gateway, validator):
    for model in ["gpt-4o-mini", "gemini-2.5-flash", "deepseek-chat", "grok-3-mini"]:
        status, body = raw(
            gateway,
            "/chat/completions",
            {"model": model, "messages": [{"role": "user", "content": "[[mock:tools]]"}],
             "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]},
        )
        assert status == 200, body
        validator(json.loads(body), "CreateChatCompletionResponse")


def test_models_and_errors_match_schema(gateway, validator):
    status, body = raw(gateway, "/models")
    assert status == 200
    validator(json.loads(body), "ListModelsResponse")
    status, body = raw(gateway, "/chat/completions", {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})
    assert status == 404
    validator(json.loads(body), "ErrorResponse")
    status, body = raw(gateway, "/chat/completions", {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "[[mock:error=429]]"}]})
    assert status == 429
    validator(json.loads(body), "ErrorResponse")

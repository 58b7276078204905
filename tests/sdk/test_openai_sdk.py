"""The official `openai` Python SDK against the real gateway binary and the mock provider binary.

Both run as processes on free loopback ports, exactly as a user would run them (README).
"""

import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import openai
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
GATEWAY = os.path.join(TARGET, "debug", "gophergate")
MOCK = os.path.join(TARGET, "debug", "gophergate-mock")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@pytest.fixture(scope="module")
def gateway():
    data = tempfile.mkdtemp()
    mock_port, gw_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOPHERGATE_") and not k.endswith("_API_KEY")}
    env.update(
        GOPHERGATE_DATA_DIR=data,
        GOPHERGATE_SERVER__LISTEN=f"127.0.0.1:{gw_port}",
        OPENAI_API_KEY="sk-upstream-sdk-test",
        OPENAI_BASE_URL=f"http://127.0.0.1:{mock_port}/v1",
        RUST_LOG="warn",
    )
    mock = subprocess.Popen([MOCK, "--listen", f"127.0.0.1:{mock_port}", "--api-key", "sk-upstream-sdk-test"])
    gw = subprocess.Popen([GATEWAY, "serve"], env=env)
    try:
        wait_http(f"http://127.0.0.1:{gw_port}/health")
        key = subprocess.run(
            [GATEWAY, "keys", "create", "--name", "sdk"], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        yield {"base_url": f"http://127.0.0.1:{gw_port}/v1", "key": key, "env": env, "data": data}
    finally:
        gw.terminate()
        mock.terminate()
        assert gw.wait(timeout=30) == 0, "gateway did not stop cleanly on SIGTERM"
        mock.wait(timeout=10)


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

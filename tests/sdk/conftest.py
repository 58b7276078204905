"""Starts the real binaries: one mock provider per wire format and the gateway in front of them."""

import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
GATEWAY = os.path.join(TARGET, "debug", "gophergate")
MOCK = os.path.join(TARGET, "debug", "gophergate-mock")

# provider name -> (mock dialect, key env var, base-URL env var, API version path)
PROVIDERS = {
    "openai": ("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL", "/v1"),
    "gemini": ("gemini", "GEMINI_API_KEY", "GEMINI_BASE_URL", "/v1beta"),
    "deepseek": ("deepseek", "DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL", "/v1"),
    "xai": ("xai", "XAI_API_KEY", "XAI_BASE_URL", "/v1"),
}


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


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


@pytest.fixture(scope="session")
def gateway():
    data = tempfile.mkdtemp()
    gw_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOPHERGATE_") and not k.endswith("_API_KEY")}
    env.update(GOPHERGATE_DATA_DIR=data, GOPHERGATE_SERVER__LISTEN=f"127.0.0.1:{gw_port}", RUST_LOG="warn")
    procs = []
    for name, (dialect, key_var, url_var, version) in PROVIDERS.items():
        port = free_port()
        key = f"upstream-{name}-key-123456"
        procs.append(
            subprocess.Popen([MOCK, "--listen", f"127.0.0.1:{port}", "--api-key", key, "--dialect", dialect])
        )
        wait_port(port)
        env[key_var] = key
        env[url_var] = f"http://127.0.0.1:{port}{version}"
    gw = subprocess.Popen([GATEWAY, "serve"], env=env)
    try:
        wait_http(f"http://127.0.0.1:{gw_port}/health")
        key = subprocess.run(
            [GATEWAY, "keys", "create", "--name", "sdk"], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        yield {"base_url": f"http://127.0.0.1:{gw_port}/v1", "key": key, "env": env, "data": data}
    finally:
        gw.terminate()
        for p in procs:
            p.terminate()
        assert gw.wait(timeout=30) == 0, "gateway did not stop cleanly on SIGTERM"
        for p in procs:
            p.wait(timeout=10)

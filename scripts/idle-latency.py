#!/usr/bin/env python3
"""One request at a time on one kept-alive connection, with a pause before each: p50/p90 latency.

BENCHMARKS.md uses it to show what a request costs after the server has been idle. Run it against
the mock directly and through the gateway, for example:

    target/release/gophergate-mock --listen 127.0.0.1:47001 --api-key sk-m --latency-ms 0 &
    KEY=$(OPENAI_API_KEY=sk-m OPENAI_BASE_URL=http://127.0.0.1:47001/v1 target/release/gophergate keys create --name idle)
    OPENAI_API_KEY=sk-m OPENAI_BASE_URL=http://127.0.0.1:47001/v1 \
        GOPHERGATE_SERVER__LISTEN=127.0.0.1:47003 target/release/gophergate serve &
    for pause in 0 1 5 20 60; do
        scripts/idle-latency.py --port 47001 --key sk-m --pause-ms $pause
        scripts/idle-latency.py --port 47003 --key "$KEY" --pause-ms $pause
    done
"""
import argparse
import json
import socket
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--requests", type=int, default=60)
    p.add_argument("--pause-ms", type=float, default=0.0)
    a = p.parse_args()
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
        f"Authorization: Bearer {a.key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    s = socket.create_connection(("127.0.0.1", a.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    took = []
    for _ in range(a.requests):
        time.sleep(a.pause_ms / 1000)
        t0 = time.perf_counter()
        s.sendall(head + body)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("the server closed the connection")
            buf += chunk
            if b"\r\n\r\n" not in buf:
                continue
            h, rest = buf.split(b"\r\n\r\n", 1)
            length = next(
                int(line.split(b":", 1)[1])
                for line in h.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(rest) >= length:
                break
        took.append((time.perf_counter() - t0) * 1000)
    took.sort()
    n = len(took)
    print(f"port {a.port} pause {a.pause_ms:g} ms: p50 {took[n // 2]:.3f} ms, p90 {took[int(n * 0.9)]:.3f} ms")


if __name__ == "__main__":
    main()

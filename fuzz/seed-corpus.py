#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the repo's own golden fixtures (tests/fixtures/**).

Run from the repository root: python3 fuzz/seed-corpus.py. The corpora are not committed."""

import hashlib
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def inputs(pattern):
    return sorted(p for p in FIX.glob(pattern) if ".expected." not in p.name)


def sse_bodies():
    for p in inputs("*/*.sse"):
        yield p.read_bytes()
    # Gemini stream fixtures are JSON arrays of events; the wire has one `data:` line each.
    for p in inputs("gemini/stream_*.json"):
        events = json.loads(p.read_text())
        yield "".join(f"data: {json.dumps(e, separators=(',', ':'))}\r\n\r\n" for e in events).encode()


# sse: byte 0 is the number of chunk sizes that follow (see fuzz_targets/sse.rs).
for body in sse_bodies():
    put("sse", b"\x00" + body)
    put("sse", b"\x03\x01\x07\x40" + body)

for p in inputs("gemini/request_*.json") + inputs("deepseek/*request*.json"):
    put("gemini_request", p.read_bytes())
    put("openai_dialects", p.read_bytes())
put("gemini_request", '{"model":"text-embedding-004","input":["a","b"],"dimensions":8}')
put("gemini_request", '{"model":"models/gemini-embedding-001","input":"hi","encoding_format":"base64"}')

for p in inputs("gemini/response_*.json") + inputs("gemini/stream_*.json"):
    put("gemini_response", p.read_bytes())
put("gemini_response", '{"embeddings":[{"values":[0.5,-1.25,3e38]},{"values":[]}]}')

for p in inputs("deepseek/*.json") + inputs("xai/*.json"):
    put("openai_dialects", p.read_bytes())
for body in sse_bodies():
    for line in body.decode().splitlines():
        if line.startswith("data: {"):
            put("openai_dialects", line[len("data: "):])

for body in [
    '{"error":{"message":"m","type":"t","param":"max_tokens","code":"c"}}',
    '[{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED",'
    '"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"34.4s"},'
    '{"reason":"API_KEY_INVALID"}]}}]',
    '{"code":"Client specified an invalid argument","error":"Incorrect API key provided"}',
    "<html>bad gateway</html>",
]:
    put("error_body", body)

# Inputs that once broke the code (see the regression tests next to each fix).
put("sse", b"\x00\xEF\xBB\xBFdata: {}\n\n")
put("sse", b'\x00data: {"choices":[],\ndata: "model":"m"}\n\n')
MAX = 2**64 - 1
put("gemini_response", json.dumps({"usageMetadata": {"promptTokenCount": MAX, "toolUsePromptTokenCount": 1}}))
put("openai_dialects", json.dumps({"prompt_tokens": MAX, "completion_tokens": 1, "total_tokens": 5,
                                   "completion_tokens_details": {"reasoning_tokens": 1}}))
defs = {f"d{i}": {"properties": {k: {"$ref": f"#/$defs/d{i + 1}"} for k in "abcd"}} for i in range(16)}
defs["d16"] = {"type": "string"}
put("gemini_request", json.dumps({
    "model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"$defs": defs, "$ref": "#/$defs/d0"}}}],
}))

for d in sorted(CORPUS.iterdir()):
    print(f"{d.name}: {len(list(d.iterdir()))} seeds")

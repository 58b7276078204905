//! Golden tests for `translate::openai_dialects`: DeepSeek and xAI payloads in their documented wire
//! shapes (`tests/fixtures/{deepseek,xai}/*.json|*.sse`) go through the fix-ups, and the result
//! must equal the checked-in client-facing `*.expected.json`. Besides the exact comparison, every
//! output is checked against the OpenAI-shape rules a client relies on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gophergate::{
    domain::ChatRequest,
    translate::openai_dialects::{ChunkFix, Dialect, fix_chunk, fix_response, prepare_request},
};
use serde_json::Value;

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $path
        ))
    };
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// The `data:` payloads of an SSE body, as JSON, without `[DONE]`; comment lines are skipped.
fn sse_chunks(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| *d != "[DONE]")
        .map(json)
        .collect()
}

fn translate_body(dialect: Dialect, upstream: &str) -> Value {
    let mut body = json(upstream);
    let before = body.clone();
    let changed = fix_response(dialect, &mut body);
    assert_eq!(
        changed,
        body != before,
        "`changed` must say whether it changed"
    );
    body
}

fn translate_stream(dialect: Dialect, upstream: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for mut chunk in sse_chunks(upstream) {
        let before = chunk.clone();
        match fix_chunk(dialect, &mut chunk) {
            ChunkFix::Unchanged => assert_eq!(chunk, before),
            ChunkFix::Changed => {
                assert_ne!(chunk, before);
                out.push(chunk);
                continue;
            }
            ChunkFix::Split(usage) => {
                out.push(chunk);
                out.push(usage);
                continue;
            }
        }
        out.push(chunk);
    }
    out
}

fn assert_golden(actual: &Value, expected: &str, name: &str) {
    let expected = json(expected);
    assert!(
        *actual == expected,
        "{name}: translation differs from the golden file\n--- actual ---\n{}\n--- expected ---\n{}",
        serde_json::to_string_pretty(actual).unwrap(),
        serde_json::to_string_pretty(&expected).unwrap()
    );
}

/// Usage in OpenAI's meaning: total = prompt + completion, reasoning and cached within.
fn assert_openai_usage(u: &Value) {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    assert_eq!(
        n(&u["total_tokens"]),
        n(&u["prompt_tokens"]) + n(&u["completion_tokens"]),
        "{u}"
    );
    assert!(n(&u["completion_tokens_details"]["reasoning_tokens"]) <= n(&u["completion_tokens"]));
    assert!(u["prompt_tokens_details"]["cached_tokens"].is_u64(), "{u}");
    assert!(n(&u["prompt_tokens_details"]["cached_tokens"]) <= n(&u["prompt_tokens"]));
}

fn assert_openai_body(b: &Value) {
    for c in b["choices"].as_array().unwrap() {
        let c = c.as_object().unwrap();
        for k in ["index", "message", "finish_reason", "logprobs"] {
            assert!(c.contains_key(k), "choice lacks `{k}`: {b}");
        }
        let m = c["message"].as_object().unwrap();
        for k in ["role", "content", "refusal"] {
            assert!(m.contains_key(k), "message lacks `{k}`: {b}");
        }
    }
    assert_openai_usage(&b["usage"]);
}

fn assert_openai_stream(chunks: &[Value]) {
    let with_usage: Vec<&Value> = chunks.iter().filter(|c| !c["usage"].is_null()).collect();
    assert_eq!(with_usage.len(), 1, "exactly one chunk carries usage");
    assert_eq!(with_usage[0]["choices"], Value::Array(vec![]));
    assert_eq!(
        chunks.last().unwrap()["choices"],
        Value::Array(vec![]),
        "usage comes last"
    );
    assert_openai_usage(&with_usage[0]["usage"]);
    for c in chunks {
        for choice in c["choices"].as_array().unwrap() {
            let choice = choice.as_object().unwrap();
            for k in ["index", "delta", "finish_reason", "logprobs"] {
                assert!(choice.contains_key(k), "chunk choice lacks `{k}`: {c}");
            }
        }
    }
    let finishes = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .count();
    assert_eq!(finishes, 1);
}

#[test]
fn deepseek_reasoner_answer() {
    let out = translate_body(Dialect::DeepSeek, fixture!("deepseek/reasoner.json"));
    assert_golden(
        &out,
        fixture!("deepseek/reasoner.expected.json"),
        "deepseek/reasoner",
    );
    assert_openai_body(&out);
    assert!(
        out["choices"][0]["message"]["reasoning_content"]
            .as_str()
            .is_some()
    );
}

#[test]
fn deepseek_legacy_usage_gets_cached_tokens() {
    let out = translate_body(
        Dialect::DeepSeek,
        fixture!("deepseek/chat-tool-call-legacy-usage.json"),
    );
    assert_golden(
        &out,
        fixture!("deepseek/chat-tool-call-legacy-usage.expected.json"),
        "deepseek/chat-tool-call-legacy-usage",
    );
    assert_openai_body(&out);
    assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 192);
}

#[test]
fn deepseek_reasoner_stream_is_split() {
    let out = translate_stream(Dialect::DeepSeek, fixture!("deepseek/reasoner-stream.sse"));
    assert_golden(
        &Value::Array(out.clone()),
        fixture!("deepseek/reasoner-stream.expected.json"),
        "deepseek/reasoner-stream",
    );
    assert_openai_stream(&out);
}

#[test]
fn deepseek_tool_call_stream_is_split_and_cached_tokens_added() {
    let out = translate_stream(
        Dialect::DeepSeek,
        fixture!("deepseek/chat-tool-call-stream.sse"),
    );
    assert_golden(
        &Value::Array(out.clone()),
        fixture!("deepseek/chat-tool-call-stream.expected.json"),
        "deepseek/chat-tool-call-stream",
    );
    assert_openai_stream(&out);
}

#[test]
fn deepseek_reasoner_request() {
    let mut req: ChatRequest =
        serde_json::from_str(fixture!("deepseek/reasoner-request.json")).unwrap();
    prepare_request(Dialect::DeepSeek, &mut req).unwrap();
    assert_golden(
        &serde_json::to_value(&req).unwrap(),
        fixture!("deepseek/reasoner-request.expected.json"),
        "deepseek/reasoner-request",
    );
}

#[test]
fn xai_grok_3_mini_answer() {
    let out = translate_body(Dialect::Xai, fixture!("xai/grok-3-mini.json"));
    assert_golden(
        &out,
        fixture!("xai/grok-3-mini.expected.json"),
        "xai/grok-3-mini",
    );
    assert_openai_body(&out);
    assert_eq!(out["usage"]["completion_tokens"], 173);
}

#[test]
fn xai_tool_call_answer() {
    let out = translate_body(Dialect::Xai, fixture!("xai/grok-4-tool-call.json"));
    assert_golden(
        &out,
        fixture!("xai/grok-4-tool-call.expected.json"),
        "xai/grok-4-tool-call",
    );
    assert_openai_body(&out);
}

#[test]
fn xai_grok_3_mini_stream() {
    let out = translate_stream(Dialect::Xai, fixture!("xai/grok-3-mini-stream.sse"));
    assert_golden(
        &Value::Array(out.clone()),
        fixture!("xai/grok-3-mini-stream.expected.json"),
        "xai/grok-3-mini-stream",
    );
    assert_openai_stream(&out);
}

#[test]
fn xai_tool_call_stream() {
    let out = translate_stream(Dialect::Xai, fixture!("xai/grok-4-tool-call-stream.sse"));
    assert_golden(
        &Value::Array(out.clone()),
        fixture!("xai/grok-4-tool-call-stream.expected.json"),
        "xai/grok-4-tool-call-stream",
    );
    assert_openai_stream(&out);
}

/// The fix-ups are idempotent: client-facing output run through them again is unchanged.
#[test]
fn fixups_are_idempotent() {
    for (dialect, expected) in [
        (
            Dialect::DeepSeek,
            fixture!("deepseek/reasoner.expected.json"),
        ),
        (
            Dialect::DeepSeek,
            fixture!("deepseek/chat-tool-call-legacy-usage.expected.json"),
        ),
        (Dialect::Xai, fixture!("xai/grok-3-mini.expected.json")),
        (Dialect::Xai, fixture!("xai/grok-4-tool-call.expected.json")),
    ] {
        let mut v = json(expected);
        assert!(!fix_response(dialect, &mut v), "{v}");
    }
    for (dialect, expected) in [
        (
            Dialect::DeepSeek,
            fixture!("deepseek/reasoner-stream.expected.json"),
        ),
        (
            Dialect::DeepSeek,
            fixture!("deepseek/chat-tool-call-stream.expected.json"),
        ),
        (
            Dialect::Xai,
            fixture!("xai/grok-3-mini-stream.expected.json"),
        ),
        (
            Dialect::Xai,
            fixture!("xai/grok-4-tool-call-stream.expected.json"),
        ),
    ] {
        let Value::Array(chunks) = json(expected) else {
            panic!("not an array")
        };
        for mut c in chunks {
            assert_eq!(fix_chunk(dialect, &mut c), ChunkFix::Unchanged, "{c}");
        }
    }
}

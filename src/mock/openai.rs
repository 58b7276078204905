//! The mock's OpenAI dialect: `/v1/chat/completions` (and `/chat/completions`), `/v1/models`.

use super::{Directives, MockState, all_text};
use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::stream;
use serde_json::{Value, json};
use std::{sync::Arc, time::Duration};

pub fn routes() -> Router<Arc<MockState>> {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/v1/embeddings", post(embeddings))
}

/// A deterministic 8-float vector per input text.
pub(crate) fn fake_embedding(text: &str) -> Vec<f32> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest[..8]
        .iter()
        .map(|b| (f32::from(*b) / 127.5 - 1.0).clamp(-1.0, 1.0))
        .collect()
}

async fn embeddings(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, &presented);
    };
    state.record(body.clone());
    if let Some(expected) = &state.config.api_key
        && &presented != expected
    {
        return error(401, &presented);
    }
    let texts: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        _ => return error(400, &presented),
    };
    let tokens: u64 = texts
        .iter()
        .map(|t| (t.len() as u64).div_ceil(4).max(1))
        .sum();
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": fake_embedding(t)}))
        .collect();
    Json(
        json!({"object": "list", "data": data, "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
    .into_response()
}

pub const CREATED: i64 = 1_770_000_000;

fn error(status: u16, presented_key: &str) -> Response {
    let (kind, code, message) = match status {
        400 => ("invalid_request_error", Some("invalid_value"), "Invalid value for 'messages'.".to_string()),
        401 => (
            "invalid_request_error",
            Some("invalid_api_key"),
            format!(
                "Incorrect API key provided: {}***. You can find your API key at https://platform.openai.com/account/api-keys.",
                presented_key.chars().take(6).collect::<String>()
            ),
        ),
        403 => ("request_forbidden", Some("unsupported_country_region_territory"), "Country, region, or territory not supported".into()),
        404 => ("invalid_request_error", Some("model_not_found"), "The model `nope` does not exist or you do not have access to it.".into()),
        429 => ("requests", Some("rate_limit_exceeded"), "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 1s.".into()),
        500 => ("server_error", None, "The server had an error while processing your request. Sorry about that!".into()),
        503 => ("server_error", None, "The engine is currently overloaded, please try again later".into()),
        _ => ("server_error", None, format!("mock error {status}")),
    };
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}})),
    )
        .into_response();
    if status == 429 {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    resp
}

/// Rough token count the mock reports: one per four bytes of message text, at least one.
pub fn prompt_tokens(body: &Value) -> u64 {
    (all_text(&body["messages"]).len() as u64)
        .div_ceil(4)
        .max(1)
}

pub fn reply_words(body: &Value) -> Vec<String> {
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| all_text(&m["content"]))
        .unwrap_or_default();
    let echo: String = last_user.trim().chars().take(120).collect();
    format!("Hello from the mock! You said: {echo}")
        .split_inclusive(' ')
        .map(str::to_string)
        .collect()
}

/// The bearer key a request presented ("" when none).
pub(crate) fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// The dialect's "bad key" answer when the mock wants a key and the request has another one.
pub(crate) fn refuse_key(
    state: &MockState,
    headers: &HeaderMap,
    error: fn(u16, &str) -> Response,
) -> Option<Response> {
    let presented = bearer(headers);
    state
        .config
        .api_key
        .as_ref()
        .filter(|expected| presented != expected.as_str())
        .map(|_| error(401, presented))
}

/// What every OpenAI-style dialect does first: parse the JSON body (else `error(400)`), record it,
/// check the key (else `error(401)`, which a dialect may map to its own status), wait the latency,
/// and answer `[[mock:error=N]]` with `error(N)`. Returns the body and its directives.
pub(crate) async fn accept(
    state: &MockState,
    headers: &HeaderMap,
    body: &[u8],
    error: fn(u16, &str) -> Response,
) -> Result<(Value, Directives), Response> {
    let presented = bearer(headers);
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return Err(error(400, presented));
    };
    state.record(body.clone());
    if let Some(expected) = &state.config.api_key
        && presented != expected
    {
        return Err(error(401, presented));
    }
    let text = all_text(&body["messages"]);
    let mut d = Directives::parse(&text);
    let model = body["model"].as_str().unwrap_or_default();
    if d.only.as_deref().is_some_and(|only| only != model) {
        d = Directives::default();
    }
    let latency = d.latency.unwrap_or(state.config.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if d.reset {
        return Err(reset_response());
    }
    let status = match d.fail {
        Some(n) => state
            .should_fail(format!("{model}\n{text}"), n)
            .then(|| d.error.unwrap_or(503)),
        None => d.error,
    };
    if let Some(status) = status {
        let mut resp = error(status, presented);
        if let Some(secs) = d.retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert("retry-after", v);
        }
        return Err(resp);
    }
    Ok((body, d))
}

async fn chat(State(state): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (body, d) = match accept(&state, &headers, &body, error).await {
        Ok(accepted) => accepted,
        Err(resp) => return resp,
    };
    let model = body["model"].as_str().unwrap_or("gpt-4o-mini").to_string();
    let upstream_model = format!("{model}-2024-07-18");
    let words = reply_words(&body);
    // `[[mock:cache=N]]` and `[[mock:reasoning=N]]` shape the usage the way OpenAI reports it:
    // cached tokens inside `prompt_tokens`, reasoning tokens inside `completion_tokens`.
    let prompt = prompt_tokens(&body).max(d.cache.unwrap_or(0));
    let reasoning = d.reasoning.unwrap_or(0);
    let completion = words.len() as u64 + reasoning;
    let usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": d.cache.unwrap_or(0), "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    });
    if body["stream"] == true {
        let include_usage = body["stream_options"]["include_usage"] == true;
        return stream_reply(upstream_model, words, usage, include_usage, &d);
    }
    if d.truncate {
        return truncated_response(&upstream_model, &words);
    }
    if d.garbage {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"id\": \"chatcmpl-x\", \"choices\": [",
        )
            .into_response();
    }
    let (message, finish) = if d.tools {
        (
            json!({"role": "assistant", "content": null, "refusal": null, "annotations": [],
                   "tool_calls": [{"id": "call_mock1", "type": "function",
                                   "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
            "tool_calls",
        )
    } else {
        (
            json!({"role": "assistant", "content": words.concat(), "refusal": null, "annotations": []}),
            "stop",
        )
    };
    Json(json!({
        "id": "chatcmpl-mock123",
        "object": "chat.completion",
        "created": CREATED,
        "model": upstream_model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_mock"
    }))
    .into_response()
}

fn stream_reply(
    model: String,
    words: Vec<String>,
    usage: Value,
    include_usage: bool,
    d: &Directives,
) -> Response {
    let chunk = |choices: Value, usage: Option<&Value>| -> String {
        let mut c = json!({"id": "chatcmpl-mock123", "object": "chat.completion.chunk", "created": CREATED,
                           "model": model, "service_tier": "default", "system_fingerprint": "fp_mock",
                           "choices": choices});
        if include_usage {
            c["usage"] = usage.cloned().unwrap_or(Value::Null);
        }
        format!("data: {c}\n\n")
    };
    let mut events = vec![chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}]),
        None,
    )];
    if d.tools {
        events.push(chunk(json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_mock1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}, "logprobs": null, "finish_reason": null}]), None));
        for frag in ["{\"city\"", ":\"Paris\"}"] {
            events.push(chunk(json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}, "logprobs": null, "finish_reason": null}]), None));
        }
    } else {
        for w in &words {
            events.push(chunk(json!([{"index": 0, "delta": {"content": w}, "logprobs": null, "finish_reason": null}]), None));
        }
    }
    let cut = d.cut.map(|n| n + 1);
    if d.garbage {
        events.truncate(d.garbage_at.unwrap_or(2));
        events.push("data: {\"id\": \"chatcmpl-mock123\", \"choices\": [{\"delta\"\n\n".into());
    } else if let Some(n) = cut {
        events.truncate(n);
    } else {
        let finish = if d.tools { "tool_calls" } else { "stop" };
        events.push(chunk(
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}]),
            None,
        ));
        if include_usage {
            events.push(chunk(json!([]), Some(&usage)));
        }
        events.push("data: [DONE]\n\n".into());
    }
    sse_response(events, pacing(d), cut.is_some())
}

/// `[[mock:reset]]`: a body that fails before its first byte. The server then closes the
/// connection with the status line and headers still unsent: the caller gets no response at all.
pub(crate) fn reset_response() -> Response {
    let body =
        stream::once(async { Err::<Bytes, _>(std::io::Error::other("mock reset the connection")) });
    Response::new(Body::from_stream(body))
}

/// `[[mock:truncate]]`: the first half of a normal answer's JSON, then the connection drops.
fn truncated_response(model: &str, words: &[String]) -> Response {
    let full = json!({
        "id": "chatcmpl-mock123", "object": "chat.completion", "created": CREATED, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": words.concat()},
                     "logprobs": null, "finish_reason": "stop"}]
    })
    .to_string();
    let mut half = full.len() / 2;
    while !full.is_char_boundary(half) {
        half -= 1;
    }
    framed_response(
        vec![full[..half].to_string()],
        Pacing::default(),
        true,
        "application/json",
    )
}

/// How a stream's events are spaced: `stall` between them, `linger` after the last one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pacing {
    pub stall: Duration,
    pub linger: Duration,
}

pub(crate) fn pacing(d: &Directives) -> Pacing {
    Pacing {
        stall: d.stall.unwrap_or_default(),
        linger: d.linger.unwrap_or_default(),
    }
}

/// An SSE response sending `events` (already framed) in order, paced; when `cut_after`, the
/// connection is then dropped with an error instead of ending cleanly.
pub(crate) fn sse_response(events: Vec<String>, pacing: Pacing, cut_after: bool) -> Response {
    framed_response(events, pacing, cut_after, "text/event-stream")
}

/// Like `sse_response`, with any content type (Gemini's non-SSE stream is a JSON array).
pub(crate) fn framed_response(
    events: Vec<String>,
    pacing: Pacing,
    cut_after: bool,
    content_type: &'static str,
) -> Response {
    let Pacing { stall, linger } = pacing;
    let body = stream::unfold(
        (events.into_iter(), false),
        move |(mut it, first_sent)| async move {
            if first_sent && !stall.is_zero() {
                tokio::time::sleep(stall).await;
            }
            match it.next() {
                Some(e) => Some((Ok::<_, std::io::Error>(Bytes::from(e)), (it, true))),
                None if cut_after => {
                    // Let the server flush the chunks already sent first; an error in the same
                    // poll would drop them (and the headers) unsent.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some((
                        Err(std::io::Error::other("mock cut the stream")),
                        (it, true),
                    ))
                }
                None => {
                    if !linger.is_zero() {
                        tokio::time::sleep(linger).await;
                    }
                    None
                }
            }
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Like the real API, the model list needs the key (the gateway's connection test calls it).
async fn models(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refuse_key(&state, &headers, error) {
        return refused;
    }
    Json(json!({"object": "list", "data": [
        {"id": "gpt-4o-mini", "object": "model", "created": CREATED, "owned_by": "system"},
        {"id": "gpt-4o", "object": "model", "created": CREATED, "owned_by": "system"}
    ]}))
    .into_response()
}

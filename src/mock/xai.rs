//! The mock's xAI dialect (wire-formats.md §4): `/v1/chat/completions`, `/v1/models`. OpenAI's
//! format with xAI's accent:
//!
//! - ids are UUIDs; choices have **no `logprobs` key**; the message has `refusal: null`, and
//!   `content: ""` beside tool calls (ids like `call_93562515`);
//! - `grok-3-mini` answers with `reasoning_content`; `grok-4*` reasoning models only count
//!   reasoning tokens; others do not reason;
//! - **`completion_tokens` excludes `reasoning_tokens`**, and `total_tokens` = prompt +
//!   completion + reasoning; usage also carries `text_tokens`/`image_tokens`, `num_sources_used`
//!   and `cost_in_usd_ticks` (1e-10 USD, at grok-3-mini's prices); `[[mock:cache=N]]` sets
//!   `cached_tokens`;
//! - stream chunks omit `finish_reason` and `logprobs` until the finish chunk; the first delta has
//!   `role` (and the first `reasoning_content` for grok-3-mini); a tool call comes whole in one
//!   delta; with `include_usage` a `choices: []` usage chunk follows the finish chunk;
//! - errors are `{"code": "<gRPC status text>", "error": "<message>"}`; a bad key is **HTTP 400**
//!   "Incorrect API key provided: …" quoting part of the key. Only that body is documented; the
//!   others follow its shape and are illustrative.

use super::{
    Directives, MockState,
    openai::{CREATED, accept, prompt_tokens, reply_words, sse_response},
};
use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<MockState>> {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
}

fn error_body(status: u16, code: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(json!({"code": code, "error": message})),
    )
        .into_response()
}

/// `401` stands for "bad key", which xAI answers with a 400.
fn error(status: u16, presented_key: &str) -> Response {
    const INVALID: &str = "Client specified an invalid argument";
    match status {
        400 => error_body(
            400,
            INVALID,
            "Failed to deserialize the JSON body into the target type",
        ),
        401 => {
            let chars: Vec<char> = presented_key.chars().collect();
            let head: String = chars.iter().take(2).collect();
            let tail: String = if chars.len() > 4 {
                chars[chars.len() - 2..].iter().collect()
            } else {
                String::new()
            };
            error_body(
                400,
                INVALID,
                &format!(
                    "Incorrect API key provided: {head}***{tail}. You can obtain an API key from https://console.x.ai."
                ),
            )
        }
        403 => error_body(
            403,
            "The caller does not have permission to execute the specified operation",
            "Your team does not have permission to use this model.",
        ),
        404 => error_body(
            404,
            "Some requested entity was not found",
            "The model nope does not exist or your team does not have access to it.",
        ),
        429 => error_body(
            429,
            "Some resource has been exhausted",
            "Too many requests: your team has exceeded its requests per minute.",
        ),
        500 => error_body(
            500,
            "Internal error",
            "The service encountered an internal error.",
        ),
        503 => error_body(
            503,
            "The service is currently unavailable",
            "The model is overloaded; try again later.",
        ),
        s => error_body(s, "Unknown error", &format!("mock error {s}")),
    }
}

/// How a model reasons: shows `reasoning_content`, only counts reasoning tokens, or neither.
#[derive(Clone, Copy, PartialEq)]
enum Reasoning {
    Shown,
    Hidden,
    None,
}

fn reasoning_of(model: &str) -> Reasoning {
    if model.starts_with("grok-3-mini") {
        Reasoning::Shown
    } else if model.starts_with("grok-4") && !model.contains("non-reasoning") {
        Reasoning::Hidden
    } else {
        Reasoning::None
    }
}

const TOOL_CALL_ID: &str = "call_93562515";

async fn chat(State(state): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (body, d) = match accept(&state, &headers, &body, error).await {
        Ok(accepted) => accepted,
        Err(resp) => return resp,
    };
    let model = body["model"].as_str().unwrap_or("grok-3-mini").to_string();
    let reasoning_kind = reasoning_of(&model);
    let words = reply_words(&body);
    let thoughts: Vec<String> = if reasoning_kind == Reasoning::None {
        Vec::new()
    } else {
        format!(
            "Okay, the user said something. I should greet them and repeat it in {} words.",
            words.len()
        )
        .split_inclusive(' ')
        .map(str::to_string)
        .collect()
    };
    let prompt = prompt_tokens(&body);
    let cached = d.cache.unwrap_or(0).min(prompt);
    let visible = words.len() as u64;
    let reasoning = thoughts.len() as u64;
    let usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": visible,
        "total_tokens": prompt + visible + reasoning,
        "prompt_tokens_details": {"text_tokens": prompt, "audio_tokens": 0, "image_tokens": 0,
                                  "cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        "num_sources_used": 0,
        // $0.30/M input, $0.075/M cached input, $0.50/M output and reasoning, in 1e-10 USD.
        "cost_in_usd_ticks": (prompt - cached) * 3000 + cached * 750 + (visible + reasoning) * 5000
    });
    let id = uuid::Uuid::new_v4().to_string();
    let shown = if reasoning_kind == Reasoning::Shown {
        thoughts.as_slice()
    } else {
        &[]
    };
    if body["stream"] == true {
        let include_usage = body["stream_options"]["include_usage"] == true;
        return stream_reply(&id, &model, &words, shown, usage, include_usage, &d);
    }
    if d.garbage {
        return (StatusCode::OK, "{\"id\": \"x\", \"choices\": [").into_response();
    }
    let mut message = if d.tools {
        json!({"role": "assistant", "content": "",
               "tool_calls": [{"id": TOOL_CALL_ID, "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                               "type": "function"}],
               "refusal": null})
    } else {
        json!({"role": "assistant", "content": words.concat(), "refusal": null})
    };
    if !shown.is_empty() {
        message["reasoning_content"] = json!(shown.concat());
    }
    Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": if d.tools { "tool_calls" } else { "stop" }}],
        "usage": usage,
        "system_fingerprint": "fp_mock_grok"
    }))
    .into_response()
}

fn stream_reply(
    id: &str,
    model: &str,
    words: &[String],
    thoughts: &[String],
    usage: Value,
    include_usage: bool,
    d: &Directives,
) -> Response {
    let chunk = |choices: Value, usage: Option<&Value>| -> String {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED,
                           "model": model, "choices": choices, "system_fingerprint": "fp_mock_grok"});
        if let Some(u) = usage {
            c["usage"] = u.clone();
        }
        format!("data: {c}\n\n")
    };
    let mut deltas: Vec<Value> = thoughts
        .iter()
        .map(|t| json!({"reasoning_content": t}))
        .collect();
    if d.tools {
        deltas.push(json!({"tool_calls": [{"id": TOOL_CALL_ID,
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            "index": 0, "type": "function"}]}));
    } else {
        deltas.extend(words.iter().map(|w| json!({"content": w})));
    }
    if let Some(first) = deltas.first_mut() {
        first["role"] = json!("assistant");
    }
    let mut events: Vec<String> = deltas
        .into_iter()
        .map(|delta| chunk(json!([{"index": 0, "delta": delta}]), None))
        .collect();
    let cut = d.cut;
    if d.garbage {
        events.truncate(1);
        events.push(format!(
            "data: {{\"id\": \"{id}\", \"choices\": [{{\"delta\"\n\n"
        ));
    } else if let Some(n) = cut {
        events.truncate(n);
    } else {
        let finish = if d.tools { "tool_calls" } else { "stop" };
        events.push(chunk(
            json!([{"index": 0, "delta": {}, "finish_reason": finish}]),
            None,
        ));
        if include_usage {
            events.push(chunk(json!([]), Some(&usage)));
        }
        events.push("data: [DONE]\n\n".into());
    }
    sse_response(events, super::openai::pacing(d), cut.is_some())
}

/// Like the real API, the model list needs the key (the gateway's connection test calls it).
async fn models(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = super::openai::refuse_key(&state, &headers, error) {
        return refused;
    }
    Json(json!({"object": "list", "data": [
        {"id": "grok-3-mini", "object": "model", "created": CREATED, "owned_by": "xai"},
        {"id": "grok-4", "object": "model", "created": CREATED, "owned_by": "xai"}
    ]}))
    .into_response()
}

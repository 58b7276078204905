//! The mock's DeepSeek dialect (wire-formats.md §3): `/chat/completions` and `/v1/chat/completions`,
//! `/models` and `/v1/models`. OpenAI's format with DeepSeek's accent:
//!
//! - ids are bare UUIDs; `deepseek-reasoner` answers with `reasoning_content` beside `content`
//!   (and its tokens in `completion_tokens_details.reasoning_tokens`, inside `completion_tokens`);
//! - usage carries `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens` as well as
//!   `prompt_tokens_details.cached_tokens` (`[[mock:cache=N]]` sets the hits);
//! - a stream has `"usage": null` on every chunk except the last content chunk, which carries the
//!   `finish_reason` and the full usage together (there is no `choices: []` usage chunk);
//!   a reasoner stream sends `reasoning_content` deltas (`content: null`) first, then `content`
//!   deltas (`reasoning_content: null`);
//! - `[[mock:keepalive=N]]` sends N keep-alives first: blank lines before a JSON body, or
//!   `: keep-alive` SSE comments before the first chunk, as DeepSeek does under load;
//! - errors are OpenAI-shaped with DeepSeek's statuses: 400, 401 (bad key), 402 (insufficient
//!   balance), 422, 429, 500, 503. An input assistant message with `reasoning_content` (and no tool
//!   calls) is a 400, and so is `logprobs`/`top_logprobs` with `deepseek-reasoner`.
//!
//! The status codes and shapes are documented; the exact error messages are illustrative.

use super::{
    Directives, MockState,
    openai::{CREATED, accept, prompt_tokens, reply_words, sse_response},
};
use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<MockState>> {
    Router::new()
        .route("/chat/completions", post(chat))
        .route("/v1/chat/completions", post(chat))
        .route("/models", get(models))
        .route("/v1/models", get(models))
}

fn error_body(status: u16, kind: &str, code: &str, message: &str) -> Response {
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

fn error(status: u16, presented_key: &str) -> Response {
    match status {
        400 => error_body(
            400,
            "invalid_request_error",
            "invalid_request_error",
            "Failed to deserialize the JSON body into the target type",
        ),
        401 => {
            let tail: String = presented_key
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            error_body(
                401,
                "authentication_error",
                "invalid_request_error",
                &format!("Authentication Fails, Your api key: ****{tail} is invalid"),
            )
        }
        402 => error_body(
            402,
            "unknown_error",
            "invalid_request_error",
            "Insufficient Balance",
        ),
        422 => error_body(
            422,
            "invalid_request_error",
            "invalid_request_error",
            "Invalid parameters: max_tokens must be between 1 and 8192",
        ),
        429 => error_body(
            429,
            "rate_limit_error",
            "rate_limit_exceeded",
            "Rate Limit Reached",
        ),
        500 => error_body(500, "server_error", "server_error", "Server Error"),
        503 => error_body(
            503,
            "server_error",
            "server_error",
            "Server overloaded, please try again later",
        ),
        s => error_body(
            s,
            "server_error",
            "server_error",
            &format!("mock error {s}"),
        ),
    }
}

/// Checks DeepSeek makes itself (a 400 naming the problem), after the common ones.
fn reject(body: &Value, reasoner: bool) -> Option<Response> {
    let echoed_reasoning = body["messages"].as_array().is_some_and(|ms| {
        ms.iter().any(|m| {
            m["role"] == "assistant"
                && m.get("reasoning_content").is_some()
                && m["tool_calls"].as_array().is_none_or(Vec::is_empty)
        })
    });
    if echoed_reasoning {
        return Some(error_body(
            400,
            "invalid_request_error",
            "invalid_request_error",
            "The `reasoning_content` field is not allowed in input messages; remove it from earlier assistant turns.",
        ));
    }
    if reasoner {
        for param in ["logprobs", "top_logprobs"] {
            if body.get(param).is_some_and(|v| !v.is_null() && *v != false) {
                return Some(error_body(
                    400,
                    "invalid_request_error",
                    "invalid_request_error",
                    &format!("deepseek-reasoner does not support the parameter `{param}`"),
                ));
            }
        }
    }
    None
}

/// The reasoner's thoughts, one word per piece.
fn reasoning_words(reply: &[String]) -> Vec<String> {
    format!(
        "The user wants a reply. It will have {} words. Greet them and repeat what they said.",
        reply.len()
    )
    .split_inclusive(' ')
    .map(str::to_string)
    .collect()
}

const TOOL_CALL_ID: &str = "call_00_mockWeather0001";

async fn chat(State(state): State<Arc<MockState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (body, d) = match accept(&state, &headers, &body, error).await {
        Ok(accepted) => accepted,
        Err(resp) => return resp,
    };
    let model = body["model"]
        .as_str()
        .unwrap_or("deepseek-chat")
        .to_string();
    let reasoner = model.contains("reasoner");
    if let Some(resp) = reject(&body, reasoner) {
        return resp;
    }
    let words = reply_words(&body);
    let thoughts = if reasoner {
        reasoning_words(&words)
    } else {
        Vec::new()
    };
    let prompt = prompt_tokens(&body);
    let hits = d.cache.unwrap_or(0).min(prompt);
    let visible = words.len() as u64;
    let reasoning = thoughts.len() as u64;
    let mut usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": visible + reasoning,
        "total_tokens": prompt + visible + reasoning,
        "prompt_tokens_details": {"cached_tokens": hits},
        "prompt_cache_hit_tokens": hits,
        "prompt_cache_miss_tokens": prompt - hits
    });
    if reasoner {
        usage["completion_tokens_details"] = json!({"reasoning_tokens": reasoning});
    }
    let id = uuid::Uuid::new_v4().to_string();
    let keepalives = d.keepalive.unwrap_or(0);
    if body["stream"] == true {
        return stream_reply(&id, &model, &words, &thoughts, usage, &d);
    }
    let text = if d.garbage {
        "{\"id\": \"x\", \"choices\": [".to_string()
    } else {
        let mut message = if d.tools {
            json!({"role": "assistant", "content": "",
                   "tool_calls": [{"index": 0, "id": TOOL_CALL_ID, "type": "function",
                                   "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]})
        } else {
            json!({"role": "assistant", "content": words.concat()})
        };
        if reasoner {
            message["reasoning_content"] = json!(thoughts.concat());
        }
        json!({
            "id": id,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": null,
                         "finish_reason": if d.tools { "tool_calls" } else { "stop" }}],
            "usage": usage,
            "system_fingerprint": "fp_mock_prod0820_fp8_kvcache"
        })
        .to_string()
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{}{text}", "\n".repeat(keepalives)),
    )
        .into_response()
}

fn stream_reply(
    id: &str,
    model: &str,
    words: &[String],
    thoughts: &[String],
    usage: Value,
    d: &Directives,
) -> Response {
    let chunk = |delta: Value, finish: Option<&str>, usage: Option<&Value>| -> String {
        let c = json!({"id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                       "system_fingerprint": "fp_mock_prod0820_fp8_kvcache",
                       "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                       "usage": usage});
        format!("data: {c}\n\n")
    };
    let reasoner = !thoughts.is_empty();
    let mut events = vec![if reasoner {
        chunk(
            json!({"role": "assistant", "content": null, "reasoning_content": ""}),
            None,
            None,
        )
    } else {
        chunk(json!({"role": "assistant", "content": ""}), None, None)
    }];
    for t in thoughts {
        events.push(chunk(
            json!({"content": null, "reasoning_content": t}),
            None,
            None,
        ));
    }
    let content_delta = |text: &str| {
        if reasoner {
            json!({"content": text, "reasoning_content": null})
        } else {
            json!({"content": text})
        }
    };
    let last = if d.tools {
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": TOOL_CALL_ID, "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]}),
            None,
            None,
        ));
        for frag in ["{\"city\"", ": \"Paris\"}"] {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}),
                None,
                None,
            ));
        }
        chunk(content_delta(""), Some("tool_calls"), Some(&usage))
    } else {
        let (final_word, rest) = words.split_last().map_or(("", words), |(l, r)| (l, r));
        for w in rest {
            events.push(chunk(content_delta(w), None, None));
        }
        chunk(content_delta(final_word), Some("stop"), Some(&usage))
    };
    let cut = d.cut.map(|n| n + 1);
    if d.garbage {
        events.truncate(2);
        events.push(format!(
            "data: {{\"id\": \"{id}\", \"choices\": [{{\"delta\"\n\n"
        ));
    } else if let Some(n) = cut {
        events.truncate(n);
    } else {
        events.push(last);
        events.push("data: [DONE]\n\n".into());
    }
    let keepalives = d.keepalive.unwrap_or(0);
    if keepalives > 0 {
        events.splice(
            0..0,
            std::iter::repeat_n(": keep-alive\n\n".to_string(), keepalives),
        );
    }
    sse_response(events, super::openai::pacing(d), cut.is_some())
}

/// Like the real API, the model list needs the key (the gateway's connection test calls it).
async fn models(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    if let Some(refused) = super::openai::refuse_key(&state, &headers, error) {
        return refused;
    }
    Json(json!({"object": "list", "data": [
        {"id": "deepseek-chat", "object": "model", "owned_by": "deepseek"},
        {"id": "deepseek-reasoner", "object": "model", "owned_by": "deepseek"}
    ]}))
    .into_response()
}

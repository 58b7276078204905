//! The mock's Gemini dialect: Google's Generative Language API (native, `v1beta`).
//!
//! - `POST /v1beta/models/{model}:generateContent`
//! - `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` (SSE, CRLF framing, no `[DONE]`;
//!   without `alt=sse` one JSON array)
//! - `POST /v1beta/models/{model}:countTokens`
//! - `POST /v1beta/models/{model}:embedContent` and `:batchEmbedContents`
//! - `GET /v1beta/models`, `GET /v1beta/models/{model}`
//!
//! Auth is `x-goog-api-key` or `?key=`; a bad key is HTTP 400 `INVALID_ARGUMENT` /
//! `API_KEY_INVALID` (Google has no 401 here). Errors are the Google RPC envelope
//! `{"error":{"code","message","status","details"}}`.
//!
//! Besides the shared directives (error, latency, cut, garbage, tools, stall) this dialect obeys
//! `[[mock:thinking]]`, `[[mock:blocked]]`, `[[mock:maxtokens]]`, `[[mock:safety]]` and
//! `[[mock:cache=N]]`. A request whose last content holds a `functionResponse` gets
//! "The weather is fine."; with `generationConfig.thinkingConfig` set, the first `functionCall`
//! part of each model step in the current turn must carry the signature this mock issued
//! ([`TOOL_SIGNATURE`]) or the API's escape hatch, else 400 like the real thinking models.

use super::{Directives, MockState, all_text};
use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use rand::{Rng, distributions::Alphanumeric};
use serde::Serialize;
use serde_json::{Value, json};
use std::{collections::HashMap, io, sync::Arc};

pub fn routes() -> Router<Arc<MockState>> {
    Router::new()
        .route("/v1beta/models", get(list_models))
        .route("/v1beta/models/{*rest}", get(get_model).post(call))
}

/// Text of the thought-summary part sent with `[[mock:thinking]]`.
pub const THOUGHT_TEXT: &str = "Let me think...";
/// Signature put on the first visible text part (or the trailing empty part of a stream).
pub const TEXT_SIGNATURE: &str = "c2lnLTEyMw==";
/// Signature put on the `functionCall` part; it must come back on the next turn.
pub const TOOL_SIGNATURE: &str = "c2lnLXRvb2w=";
/// The documented literal that disables signature validation.
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";
/// `thoughtsTokenCount` reported with `[[mock:thinking]]`.
pub const THOUGHT_TOKENS: u64 = 12;
/// `candidatesTokenCount` reported for the mock's one function call.
pub const CALL_TOKENS: u64 = 5;
/// Reply to a turn that carries a function result.
pub const TOOL_RESULT_REPLY: &str = "The weather is fine.";
pub const MISSING_SIGNATURE: &str =
    "Function call is missing a thought_signature in functionCall parts.";
pub const BAD_KEY: &str = "API key not valid. Please pass a valid API key.";

// ---------------------------------------------------------------------------------------------
// Errors

fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

/// Google's JSON bodies are pretty-printed (two-space indent).
fn json_response(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body,
    )
        .into_response()
}

/// The Google RPC error envelope.
pub fn rpc_error(code: u16, message: &str, details: Vec<Value>) -> Response {
    let mut err = json!({"code": code, "message": message, "status": status_name(code)});
    if !details.is_empty() {
        err["details"] = Value::Array(details);
    }
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &json!({ "error": err }),
    )
}

fn invalid(message: &str) -> Response {
    rpc_error(400, message, vec![])
}

fn bad_key() -> Response {
    rpc_error(
        400,
        BAD_KEY,
        vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"}
        })],
    )
}

fn not_found(model: &str, method: &str) -> Response {
    rpc_error(
        404,
        &format!(
            "models/{model} is not found for API version v1beta, or is not supported for {method}. \
             Call ListModels to see the list of available models and their supported methods."
        ),
        vec![],
    )
}

/// The error `[[mock:error=STATUS]]` asks for.
fn directive_error(code: u16, model: &str) -> Response {
    match code {
        400 => invalid("Request contains an invalid argument."),
        403 => rpc_error(
            403,
            "Permission denied: the caller does not have permission to access this model.",
            vec![],
        ),
        404 => not_found(model, "generateContent"),
        429 => rpc_error(
            429,
            "You exceeded your current quota, please check your plan and billing details. For more \
             information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
            vec![
                json!({
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": "10"
                    }]
                }),
                json!({
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [{"description": "Learn more about Gemini API quotas",
                               "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]
                }),
                json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"}),
            ],
        ),
        500 => rpc_error(
            500,
            "An internal error has occurred. Please retry or report in \
             https://developers.generativeai.google/guide/troubleshooting",
            vec![],
        ),
        503 => rpc_error(
            503,
            "The model is overloaded. Please try again later.",
            vec![],
        ),
        504 => rpc_error(504, "The request timed out. Please try again.", vec![]),
        other => rpc_error(other, &format!("mock error {other}"), vec![]),
    }
}

fn key_ok(state: &MockState, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
    let Some(expected) = &state.config.api_key else {
        return true;
    };
    let header_key = headers.get("x-goog-api-key").and_then(|v| v.to_str().ok());
    header_key == Some(expected.as_str()) || query.get("key") == Some(expected)
}

// ---------------------------------------------------------------------------------------------
// Request helpers

/// A field in lowerCamelCase or, as proto-JSON also accepts, snake_case.
fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel)
        .or_else(|| v.get(snake))
        .filter(|x| !x.is_null())
}

fn parts(content: &Value) -> &[Value] {
    content
        .get("parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A content without a role counts as a user turn (the API tolerates that).
fn role(content: &Value) -> &str {
    content
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("user")
}

fn is_function_response(part: &Value) -> bool {
    field(part, "functionResponse", "function_response").is_some()
}

const DATA_FIELDS: &[&str] = &[
    "text",
    "inlineData",
    "inline_data",
    "fileData",
    "file_data",
    "functionCall",
    "function_call",
    "functionResponse",
    "function_response",
    "executableCode",
    "executable_code",
    "codeExecutionResult",
    "code_execution_result",
];

/// The structural checks the real API makes on `GenerateContentRequest.contents`.
fn validate_contents(body: &Value) -> Result<(), String> {
    let Some(contents) = body
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    else {
        return Err("* GenerateContentRequest.contents: contents is not specified\n".into());
    };
    for (i, c) in contents.iter().enumerate() {
        match c.get("role") {
            None | Some(Value::Null) => {}
            Some(Value::String(r)) if r == "user" || r == "model" => {}
            Some(_) => return Err("Please use a valid role: user, model.".into()),
        }
        let ps = parts(c);
        if ps.is_empty() {
            return Err(format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            ));
        }
        for (j, p) in ps.iter().enumerate() {
            if !DATA_FIELDS
                .iter()
                .any(|f| p.get(*f).is_some_and(|x| !x.is_null()))
            {
                return Err(format!(
                    "* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field\n"
                ));
            }
            if let Some(fr) = field(p, "functionResponse", "function_response") {
                match fr.get("response") {
                    Some(Value::Object(_)) => {}
                    Some(other) => {
                        return Err(format!(
                            "Invalid value at 'contents[{i}].parts[{j}].function_response.response' \
                             (type.googleapis.com/google.protobuf.Struct), {other}"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "* GenerateContentRequest.contents[{i}].parts[{j}].function_response.response: \
                             required field is not specified\n"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn thinking_configured(body: &Value) -> bool {
    field(body, "generationConfig", "generation_config")
        .and_then(|g| field(g, "thinkingConfig", "thinking_config"))
        .is_some()
}

/// With thinking configured, the first `functionCall` part of every model step in the current
/// turn (everything after the last user content that is not just function results) must carry
/// the signature the mock issued.
fn check_signatures(body: &Value) -> Result<(), String> {
    if !thinking_configured(body) {
        return Ok(());
    }
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let start = contents
        .iter()
        .rposition(|c| role(c) == "user" && parts(c).iter().any(|p| !is_function_response(p)))
        .unwrap_or(0);
    for c in &contents[start..] {
        if role(c) != "model" {
            continue;
        }
        let first_call = parts(c)
            .iter()
            .find(|p| field(p, "functionCall", "function_call").is_some());
        if let Some(p) = first_call {
            let sig = field(p, "thoughtSignature", "thought_signature").and_then(Value::as_str);
            if !matches!(sig, Some(TOOL_SIGNATURE | SKIP_SIGNATURE)) {
                return Err(MISSING_SIGNATURE.into());
            }
        }
    }
    Ok(())
}

/// Prompt tokens the mock reports: one per four bytes of `contents` text, at least one.
pub fn prompt_tokens(body: &Value) -> u64 {
    (all_text(&body["contents"]).len() as u64)
        .div_ceil(4)
        .max(1)
}

/// The text of the latest user content that has text, whitespace-normalised.
fn last_user_text(body: &Value) -> String {
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    contents
        .iter()
        .rev()
        .filter(|c| role(c) == "user")
        .map(|c| {
            parts(c)
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .find(|t| !t.trim().is_empty())
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Whether the request's last content carries a function result (the turn after a tool call).
fn answers_tool_call(body: &Value) -> bool {
    body.get("contents")
        .and_then(Value::as_array)
        .and_then(|c| c.last())
        .is_some_and(|c| parts(c).iter().any(is_function_response))
}

/// The visible reply, split into words that keep their trailing space (concat = full text).
pub fn reply_words(body: &Value) -> Vec<String> {
    let text = if answers_tool_call(body) {
        TOOL_RESULT_REPLY.to_string()
    } else {
        let echo: String = last_user_text(body).chars().take(120).collect();
        format!("Hello from Gemini! You said: {}", echo.trim_end())
            .trim_end()
            .to_string()
    };
    text.split_inclusive(' ').map(str::to_string).collect()
}

fn response_id() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(23)
        .map(char::from)
        .collect()
}

fn safety_ratings() -> Value {
    json!([
        {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"}
    ])
}

fn blocked_ratings() -> Value {
    json!([
        {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true},
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"}
    ])
}

// ---------------------------------------------------------------------------------------------
// The answer

/// Everything the mock will say for one generate request.
#[derive(Debug, Clone)]
struct Reply {
    model: String,
    response_id: String,
    thought: bool,
    call: bool,
    words: Vec<String>,
    finish: &'static str,
    blocked: bool,
    prompt: u64,
    cached: Option<u64>,
}

impl Reply {
    fn new(body: &Value, d: &Directives, model: &str) -> Self {
        let cached = d.cache;
        let prompt = prompt_tokens(body).max(cached.unwrap_or(0));
        let call = d.tools && !answers_tool_call(body) && !d.safety;
        let words = if call || d.safety {
            Vec::new()
        } else {
            reply_words(body)
        };
        let finish = if d.safety {
            "SAFETY"
        } else if d.maxtokens {
            "MAX_TOKENS"
        } else {
            "STOP"
        };
        Reply {
            model: model.to_string(),
            response_id: response_id(),
            thought: d.thinking && !d.safety,
            call,
            words,
            finish,
            blocked: d.blocked,
            prompt,
            cached,
        }
    }

    fn thoughts(&self) -> u64 {
        if self.thought { THOUGHT_TOKENS } else { 0 }
    }

    fn total_candidates(&self) -> u64 {
        if self.call {
            CALL_TOKENS
        } else {
            self.words.len() as u64
        }
    }

    /// `usageMetadata` after `candidates` output tokens (zero counts are omitted, as proto3 does).
    fn usage(&self, candidates: u64) -> Value {
        let thoughts = self.thoughts();
        let mut u = json!({
            "promptTokenCount": self.prompt,
            "totalTokenCount": self.prompt + candidates + thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt}]
        });
        if candidates > 0 {
            u["candidatesTokenCount"] = json!(candidates);
        }
        if thoughts > 0 {
            u["thoughtsTokenCount"] = json!(thoughts);
        }
        if let Some(n) = self.cached {
            u["cachedContentTokenCount"] = json!(n);
            u["cacheTokensDetails"] = json!([{"modality": "TEXT", "tokenCount": n}]);
        }
        u
    }

    fn thought_part() -> Value {
        json!({"text": THOUGHT_TEXT, "thought": true})
    }

    fn call_part() -> Value {
        json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
               "thoughtSignature": TOOL_SIGNATURE})
    }

    fn envelope(&self, candidate: Option<Value>, candidates_so_far: u64) -> Value {
        let mut v = json!({
            "usageMetadata": self.usage(candidates_so_far),
            "modelVersion": self.model,
            "responseId": self.response_id
        });
        match candidate {
            Some(c) => v["candidates"] = json!([c]),
            None => {
                v["promptFeedback"] =
                    json!({"blockReason": "SAFETY", "safetyRatings": blocked_ratings()});
            }
        }
        v
    }

    /// The whole `GenerateContentResponse`.
    fn full(&self) -> Value {
        if self.blocked {
            return self.envelope(None, 0);
        }
        let mut cand = json!({"finishReason": self.finish, "index": 0});
        if self.finish == "SAFETY" {
            cand["safetyRatings"] = blocked_ratings();
        } else {
            let mut ps = Vec::new();
            if self.thought {
                ps.push(Self::thought_part());
            }
            if self.call {
                ps.push(Self::call_part());
            } else {
                let mut p = json!({"text": self.words.concat()});
                if self.thought {
                    p["thoughtSignature"] = json!(TEXT_SIGNATURE);
                }
                ps.push(p);
            }
            cand["content"] = json!({"role": "model", "parts": ps});
            cand["safetyRatings"] = safety_ratings();
        }
        self.envelope(Some(cand), self.total_candidates())
    }

    /// The partial responses of a stream, in order.
    fn events(&self) -> Vec<Value> {
        if self.blocked {
            return vec![self.envelope(None, 0)];
        }
        let content = |ps: Vec<Value>| json!({"role": "model", "parts": ps});
        let mut events = Vec::new();
        if self.thought {
            events.push(self.envelope(
                Some(json!({"content": content(vec![Self::thought_part()]), "index": 0})),
                0,
            ));
        }
        if self.finish == "SAFETY" {
            events.push(self.envelope(
                Some(json!({"finishReason": "SAFETY", "index": 0, "safetyRatings": blocked_ratings()})),
                0,
            ));
            return events;
        }
        if self.call {
            events.push(self.envelope(
                Some(
                    json!({"content": content(vec![Self::call_part()]), "finishReason": self.finish,
                            "index": 0, "safetyRatings": safety_ratings()}),
                ),
                CALL_TOKENS,
            ));
            return events;
        }
        // One or two words per event, alternating.
        let mut chunks: Vec<&[String]> = Vec::new();
        let mut rest = self.words.as_slice();
        let mut take = 1;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(take.min(rest.len()));
            chunks.push(chunk);
            rest = tail;
            take = 3 - take;
        }
        let mut so_far = 0;
        let count = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            so_far += chunk.len() as u64;
            let mut cand =
                json!({"content": content(vec![json!({"text": chunk.concat()})]), "index": 0});
            if i + 1 == count && !self.thought {
                cand["finishReason"] = json!(self.finish);
                cand["safetyRatings"] = safety_ratings();
            }
            events.push(self.envelope(Some(cand), so_far));
        }
        if self.thought || count == 0 {
            // The final event: an empty text part carrying the signature, and the finish reason.
            let mut p = json!({"text": ""});
            if self.thought {
                p["thoughtSignature"] = json!(TEXT_SIGNATURE);
            }
            events.push(self.envelope(
                Some(
                    json!({"content": content(vec![p]), "finishReason": self.finish,
                            "index": 0, "safetyRatings": safety_ratings()}),
                ),
                so_far,
            ));
        }
        events
    }
}

// ---------------------------------------------------------------------------------------------
// Loose JSON (`"key": value`), as the real stream writes it, kept on one line for SSE.

struct Loose;

impl serde_json::ser::Formatter for Loose {
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

fn loose(v: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Loose);
    if v.serialize(&mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| v.to_string())
}

/// SSE frames (`data: …\r\n\r\n`, no terminator) or, without `alt=sse`, pieces of a JSON array.
fn frame(events: &[Value], sse: bool, d: &Directives) -> (Vec<String>, bool) {
    let mut out: Vec<String> = if sse {
        events
            .iter()
            .map(|e| format!("data: {}\r\n\r\n", loose(e)))
            .collect()
    } else {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let sep = if i == 0 { "[" } else { ",\r\n" };
                format!(
                    "{sep}{}",
                    serde_json::to_string_pretty(e).unwrap_or_default()
                )
            })
            .collect()
    };
    if d.garbage {
        out.truncate(1);
        out.push(if sse {
            "data: {\"candidates\": [{\"content\": {\"parts\r\n\r\n".into()
        } else {
            ",\r\n{\"candidates\": [{\"content\": ".into()
        });
        return (out, false);
    }
    if let Some(n) = d.cut {
        out.truncate(n);
        return (out, true);
    }
    if !sse {
        out.push("]".into());
    }
    (out, false)
}

fn stream_response(
    frames: Vec<String>,
    cut: bool,
    sse: bool,
    pacing: super::openai::Pacing,
) -> Response {
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/json; charset=UTF-8"
    };
    super::openai::framed_response(frames, pacing, cut, content_type)
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn call(
    State(state): State<Arc<MockState>>,
    Path(rest): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((model, method)) = rest.rsplit_once(':') else {
        return rpc_error(404, &format!("Method not found for models/{rest}."), vec![]);
    };
    let model = model.strip_prefix("models/").unwrap_or(model);
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return invalid("Invalid JSON payload received. Unexpected token.");
    };
    state.record(body.clone());
    if !key_ok(&state, &headers, &query) {
        return bad_key();
    }
    match method {
        "generateContent" => generate(&state, model, &body, None).await,
        "streamGenerateContent" => {
            let sse = query.get("alt").is_some_and(|a| a == "sse");
            generate(&state, model, &body, Some(sse)).await
        }
        "countTokens" => count_tokens(&body),
        "embedContent" => embed(&state, model, &body, false).await,
        "batchEmbedContents" => embed(&state, model, &body, true).await,
        other => not_found(model, other),
    }
}

/// `stream` is `None` for `generateContent`, else whether the answer is SSE (`alt=sse`).
async fn generate(state: &MockState, model: &str, body: &Value, stream: Option<bool>) -> Response {
    if let Err(msg) = validate_contents(body).and_then(|()| check_signatures(body)) {
        return invalid(&msg);
    }
    let d = Directives::parse(&all_text(&body["contents"]));
    let latency = d.latency.unwrap_or(state.config.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(code) = d.error {
        return directive_error(code, model);
    }
    let reply = Reply::new(body, &d, model);
    match stream {
        None => {
            if d.garbage {
                return (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
                    "{\n  \"candidates\": [\n    {\n      \"content\": ",
                )
                    .into_response();
            }
            json_response(StatusCode::OK, &reply.full())
        }
        Some(sse) => {
            let (frames, cut) = frame(&reply.events(), sse, &d);
            stream_response(frames, cut, sse, super::openai::pacing(&d))
        }
    }
}

fn count_tokens(body: &Value) -> Response {
    // Either `{"contents": [...]}` or `{"generateContentRequest": {...}}`.
    let req = body.get("generateContentRequest").unwrap_or(body);
    let n = prompt_tokens(req);
    json_response(
        StatusCode::OK,
        &json!({"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]}),
    )
}

/// A deterministic embedding of `text`: `dims` values in [-1, 1] from an FNV-1a hash of its bytes.
pub fn embedding(text: &str, dims: usize) -> Vec<f64> {
    (0..dims)
        .map(|k| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for b in text.as_bytes() {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            // Finalise (splitmix64) so neighbouring dimensions differ well.
            h ^= h >> 30;
            h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h ^= h >> 27;
            h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
            h ^= h >> 31;
            let unit = (h >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            ((unit * 2.0 - 1.0) * 1e6).round() / 1e6
        })
        .collect()
}

fn embed_one(req: &Value, prefix: &str) -> Result<Value, String> {
    let Some(content) = req.get("content").filter(|c| c.is_object()) else {
        return Err(format!("* {prefix}.content: contents is not specified\n"));
    };
    let ps = parts(content);
    if ps.is_empty() {
        return Err(format!(
            "* {prefix}.content.parts: contents.parts must not be empty.\n"
        ));
    }
    let text = ps
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let dims = field(req, "outputDimensionality", "output_dimensionality")
        .and_then(Value::as_u64)
        .map(|n| n.clamp(1, 3072) as usize)
        .unwrap_or(8);
    Ok(json!({"values": embedding(&text, dims)}))
}

async fn embed(state: &MockState, model: &str, body: &Value, batch: bool) -> Response {
    let d = Directives::parse(&all_text(body));
    let result = if batch {
        match body
            .get("requests")
            .and_then(Value::as_array)
            .filter(|r| !r.is_empty())
        {
            None => Err("* BatchEmbedContentsRequest.requests: requests is not specified\n".into()),
            Some(reqs) => {
                let want = format!("models/{model}");
                reqs.iter()
                    .enumerate()
                    .map(|(i, r)| {
                        if r.get("model").and_then(Value::as_str) != Some(want.as_str()) {
                            return Err(format!(
                                "* BatchEmbedContentsRequest.requests[{i}].model: unexpected model name format\n"
                            ));
                        }
                        embed_one(r, &format!("BatchEmbedContentsRequest.requests[{i}]"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|e| json!({"embeddings": e}))
            }
        }
    } else {
        embed_one(body, "EmbedContentRequest").map(|e| json!({"embedding": e}))
    };
    let latency = d.latency.unwrap_or(state.config.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(code) = d.error {
        return directive_error(code, model);
    }
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(msg) => invalid(&msg),
    }
}

fn model_info(id: &str) -> Value {
    let (display, description, input, output, methods, thinking) = match id {
        "gemini-2.5-pro" => (
            "Gemini 2.5 Pro",
            "Stable release (June 17th, 2025) of Gemini 2.5 Pro",
            1_048_576,
            65_536,
            json!([
                "generateContent",
                "countTokens",
                "createCachedContent",
                "batchGenerateContent"
            ]),
            true,
        ),
        "gemini-2.5-flash" => (
            "Gemini 2.5 Flash",
            "Stable version of Gemini 2.5 Flash, our mid-size multimodal model that supports up to 1 million tokens, released in June of 2025.",
            1_048_576,
            65_536,
            json!([
                "generateContent",
                "countTokens",
                "createCachedContent",
                "batchGenerateContent"
            ]),
            true,
        ),
        "gemini-2.5-flash-lite" => (
            "Gemini 2.5 Flash-Lite",
            "Stable version of Gemini 2.5 Flash-Lite, released in July of 2025",
            1_048_576,
            65_536,
            json!([
                "generateContent",
                "countTokens",
                "createCachedContent",
                "batchGenerateContent"
            ]),
            true,
        ),
        "gemini-2.0-flash" => (
            "Gemini 2.0 Flash",
            "Gemini 2.0 Flash",
            1_048_576,
            8_192,
            json!([
                "generateContent",
                "countTokens",
                "createCachedContent",
                "batchGenerateContent"
            ]),
            false,
        ),
        "gemini-embedding-001" => (
            "Gemini Embedding 001",
            "Obtain a distributed representation of a text.",
            2_048,
            1,
            json!([
                "embedContent",
                "countTextTokens",
                "countTokens",
                "asyncBatchEmbedContent"
            ]),
            false,
        ),
        _ => return Value::Null,
    };
    let mut m = json!({
        "name": format!("models/{id}"),
        "version": "001",
        "displayName": display,
        "description": description,
        "inputTokenLimit": input,
        "outputTokenLimit": output,
        "supportedGenerationMethods": methods,
    });
    if id != "gemini-embedding-001" {
        m["temperature"] = json!(1.0);
        m["topP"] = json!(0.95);
        m["topK"] = json!(if thinking { 64 } else { 40 });
        m["maxTemperature"] = json!(2.0);
    }
    if thinking {
        m["thinking"] = json!(true);
    }
    m
}

const MODELS: &[&str] = &[
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "gemini-embedding-001",
];

async fn list_models(
    State(state): State<Arc<MockState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !key_ok(&state, &headers, &query) {
        return bad_key();
    }
    let models: Vec<Value> = MODELS.iter().map(|m| model_info(m)).collect();
    json_response(StatusCode::OK, &json!({ "models": models }))
}

async fn get_model(
    State(state): State<Arc<MockState>>,
    Path(rest): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !key_ok(&state, &headers, &query) {
        return bad_key();
    }
    let id = rest.strip_prefix("models/").unwrap_or(&rest);
    match model_info(id) {
        Value::Null => rpc_error(
            404,
            &format!(
                "models/{id} is not found for API version v1beta, or is not supported for get. Call ListModels to see the list of available models and their supported methods."
            ),
            vec![],
        ),
        m => json_response(StatusCode::OK, &m),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::mock::{Dialect, MockConfig};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn collect(body: Body) -> Result<Bytes, axum::Error> {
        axum::body::to_bytes(body, usize::MAX).await
    }

    fn app(api_key: Option<&str>) -> (Router, Arc<MockState>) {
        let state = Arc::new(MockState {
            config: MockConfig {
                dialect: Dialect::Gemini,
                api_key: api_key.map(str::to_string),
                latency: std::time::Duration::ZERO,
            },
            ..Default::default()
        });
        (crate::mock::router(state.clone()), state)
    }

    fn user(text: &str) -> Value {
        json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
    }

    async fn send(router: &Router, method: &str, uri: &str, body: Option<Value>) -> (u16, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
            .unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = collect(resp.into_body()).await.unwrap_or_default();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn post_json(router: &Router, uri: &str, body: Value) -> (u16, Value) {
        let (status, text) = send(router, "POST", uri, Some(body)).await;
        (status, serde_json::from_str(&text).unwrap())
    }

    const GEN: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
    const STREAM: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";

    /// Split an SSE body framed with CRLF into its JSON events.
    fn sse_events(body: &str) -> Vec<Value> {
        assert!(!body.contains("[DONE]"));
        assert!(body.ends_with("\r\n\r\n"), "{body:?}");
        body.split("\r\n\r\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let data = e.strip_prefix("data: ").expect("data: prefix");
                assert!(!data.contains('\n'));
                serde_json::from_str(data).unwrap()
            })
            .collect()
    }

    fn stream_text(events: &[Value]) -> String {
        events
            .iter()
            .flat_map(|e| {
                e["candidates"][0]["content"]["parts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|p| p["thought"] != true)
            .filter_map(|p| p["text"].as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn directives_parse_gemini_ones() {
        let d = Directives::parse("hi [[mock:thinking]] [[mock:cache=7]] [[mock:maxtokens]] x");
        assert!(d.thinking && d.maxtokens && !d.blocked && !d.safety);
        assert_eq!(d.cache, Some(7));
        let d = Directives::parse("[[mock:blocked]][[mock:safety]][[mock:error=503]]");
        assert!(d.blocked && d.safety);
        assert_eq!(d.error, Some(503));
    }

    #[tokio::test]
    async fn non_stream_reply_and_usage() {
        let (app, state) = app(None);
        let body = user("hello there");
        let (status, v) = post_json(&app, GEN, body.clone()).await;
        assert_eq!(status, 200);
        let cand = &v["candidates"][0];
        assert_eq!(cand["finishReason"], "STOP");
        assert_eq!(cand["index"], 0);
        assert_eq!(cand["content"]["role"], "model");
        let text = cand["content"]["parts"][0]["text"].as_str().unwrap();
        assert_eq!(text, "Hello from Gemini! You said: hello there");
        let p = prompt_tokens(&body);
        assert_eq!(p, (all_text(&body["contents"]).len() as u64).div_ceil(4));
        let u = &v["usageMetadata"];
        assert_eq!(u["promptTokenCount"], p);
        assert_eq!(u["candidatesTokenCount"], 7);
        assert_eq!(u["totalTokenCount"], p + 7);
        assert!(u.get("thoughtsTokenCount").is_none());
        assert!(u.get("cachedContentTokenCount").is_none());
        assert_eq!(u["promptTokensDetails"][0]["tokenCount"], p);
        assert_eq!(v["modelVersion"], "gemini-2.5-flash");
        assert!(v["responseId"].as_str().unwrap().len() >= 10);
        assert_eq!(state.last_request().unwrap(), body);
    }

    #[tokio::test]
    async fn thinking_tools_and_cache() {
        let (app, _) = app(None);
        let (_, v) = post_json(&app, GEN, user("q [[mock:thinking]] [[mock:cache=3]]")).await;
        let parts = v["candidates"][0]["content"]["parts"].as_array().unwrap();
        assert_eq!(parts[0], json!({"text": THOUGHT_TEXT, "thought": true}));
        assert_eq!(parts[1]["thoughtSignature"], TEXT_SIGNATURE);
        assert!(parts[1].get("thought").is_none());
        let u = &v["usageMetadata"];
        let (p, c) = (
            u["promptTokenCount"].as_u64().unwrap(),
            u["candidatesTokenCount"].as_u64().unwrap(),
        );
        assert_eq!(u["thoughtsTokenCount"], THOUGHT_TOKENS);
        assert_eq!(u["totalTokenCount"], p + c + THOUGHT_TOKENS);
        assert_eq!(u["cachedContentTokenCount"], 3);

        let (_, v) = post_json(&app, GEN, user("weather? [[mock:tools]]")).await;
        let cand = &v["candidates"][0];
        assert_eq!(cand["finishReason"], "STOP");
        let parts = cand["content"]["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0]["functionCall"]["name"], "get_weather");
        assert_eq!(parts[0]["functionCall"]["args"], json!({"city": "Paris"}));
        assert_eq!(parts[0]["thoughtSignature"], TOOL_SIGNATURE);
    }

    #[tokio::test]
    async fn finish_reasons_and_blocked() {
        let (app, _) = app(None);
        let (_, v) = post_json(&app, GEN, user("x [[mock:maxtokens]]")).await;
        assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
        let (_, v) = post_json(&app, GEN, user("x [[mock:safety]]")).await;
        assert_eq!(v["candidates"][0]["finishReason"], "SAFETY");
        assert!(v["candidates"][0].get("content").is_none());
        let (status, v) = post_json(&app, GEN, user("x [[mock:blocked]]")).await;
        assert_eq!(status, 200);
        assert!(v.get("candidates").is_none());
        assert_eq!(v["promptFeedback"]["blockReason"], "SAFETY");
        assert!(v["promptFeedback"]["safetyRatings"].is_array());
        assert!(v["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
    }

    #[tokio::test]
    async fn errors_use_the_rpc_envelope() {
        let (app, _) = app(None);
        for (code, status) in [
            (429, "RESOURCE_EXHAUSTED"),
            (500, "INTERNAL"),
            (503, "UNAVAILABLE"),
            (404, "NOT_FOUND"),
            (403, "PERMISSION_DENIED"),
            (400, "INVALID_ARGUMENT"),
        ] {
            let (got, v) = post_json(&app, GEN, user(&format!("[[mock:error={code}]]"))).await;
            assert_eq!(got, code);
            assert_eq!(v["error"]["code"], code);
            assert_eq!(v["error"]["status"], status);
            assert!(v["error"]["message"].is_string());
        }
        let (_, v) = post_json(&app, STREAM, user("[[mock:error=429]]")).await;
        let retry = v["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
            .unwrap();
        assert_eq!(retry["retryDelay"], "2s");
        let (_, v) = post_json(&app, GEN, user("[[mock:error=503]]")).await;
        assert_eq!(
            v["error"]["message"],
            "The model is overloaded. Please try again later."
        );
    }

    #[tokio::test]
    async fn auth_header_or_query() {
        let (app, _) = app(Some("k1"));
        let (status, v) = post_json(&app, GEN, user("hi")).await;
        assert_eq!(status, 400);
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(v["error"]["message"], BAD_KEY);
        assert_eq!(v["error"]["details"][0]["reason"], "API_KEY_INVALID");
        assert_eq!(
            v["error"]["details"][0]["metadata"]["service"],
            "generativelanguage.googleapis.com"
        );
        let (status, _) = post_json(&app, &format!("{GEN}?key=k1"), user("hi")).await;
        assert_eq!(status, 200);
        let req = Request::builder()
            .method("POST")
            .uri(GEN)
            .header("x-goog-api-key", "k1")
            .body(Body::from(user("hi").to_string()))
            .unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 200);
        let (status, _) = send(&app, "GET", "/v1beta/models?key=nope", None).await;
        assert_eq!(status, 400);
        let (status, _) = send(&app, "GET", "/v1beta/models?key=k1", None).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn validation_rejects_like_the_api() {
        let (app, _) = app(None);
        for body in [
            json!({}),
            json!({"contents": []}),
            json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
            json!({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}),
            json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": "sunny"}}]}]}),
            json!({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": [1]}}]}]}),
            json!({"contents": [{"role": "user", "parts": []}]}),
        ] {
            let (status, v) = post_json(&app, GEN, body.clone()).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        }
        // Consecutive same-role contents are fine.
        let body = json!({"contents": [
            {"role": "user", "parts": [{"text": "a"}]},
            {"role": "user", "parts": [{"text": "b"}]}
        ]});
        let (status, v) = post_json(&app, GEN, body).await;
        assert_eq!(status, 200);
        assert!(
            v["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .ends_with("You said: b")
        );
    }

    fn tool_round(signature: Option<&str>, thinking: bool) -> Value {
        let mut call = json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}});
        if let Some(s) = signature {
            call["thoughtSignature"] = json!(s);
        }
        let mut body = json!({"contents": [
            {"role": "user", "parts": [{"text": "weather? [[mock:tools]]"}]},
            {"role": "model", "parts": [call]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}]}
        ]});
        if thinking {
            body["generationConfig"] = json!({"thinkingConfig": {"includeThoughts": true}});
        }
        body
    }

    #[tokio::test]
    async fn tool_result_turn_and_signatures() {
        let (app, _) = app(None);
        let (status, v) = post_json(&app, GEN, tool_round(Some(TOOL_SIGNATURE), true)).await;
        assert_eq!(status, 200);
        assert_eq!(
            v["candidates"][0]["content"]["parts"][0]["text"],
            TOOL_RESULT_REPLY
        );
        // Without thinking the signature is not required.
        let (status, _) = post_json(&app, GEN, tool_round(None, false)).await;
        assert_eq!(status, 200);
        // With thinking, a missing or foreign signature is rejected.
        for sig in [None, Some("bm9wZQ==")] {
            let (status, v) = post_json(&app, GEN, tool_round(sig, true)).await;
            assert_eq!(status, 400);
            assert_eq!(v["error"]["message"], MISSING_SIGNATURE);
        }
        let (status, _) = post_json(&app, GEN, tool_round(Some(SKIP_SIGNATURE), true)).await;
        assert_eq!(status, 200);
        // snake_case config is recognised too.
        let mut body = tool_round(None, false);
        body["generation_config"] = json!({"thinking_config": {"thinking_budget": 1024}});
        assert_eq!(post_json(&app, GEN, body).await.0, 400);
        // A call from an earlier turn (before a new user text) is not checked.
        let mut body = tool_round(None, true);
        body["contents"].as_array_mut().unwrap().extend([
            json!({"role": "model", "parts": [{"text": "It is sunny."}]}),
            json!({"role": "user", "parts": [{"text": "thanks"}]}),
        ]);
        assert_eq!(post_json(&app, GEN, body).await.0, 200);
    }

    #[tokio::test]
    async fn stream_framing_and_cumulative_usage() {
        let (app, _) = app(None);
        let body = user("one two three four");
        let (status, text) = send(&app, "POST", STREAM, Some(body.clone())).await;
        assert_eq!(status, 200);
        assert!(text.starts_with("data: {\""));
        assert!(text.contains("\": "), "loose JSON has a space after ':'");
        let events = sse_events(&text);
        assert!(events.len() > 3);
        let expected = "Hello from Gemini! You said: one two three four";
        assert_eq!(stream_text(&events), expected);
        let p = prompt_tokens(&body);
        let mut last_c = 0;
        for (i, e) in events.iter().enumerate() {
            let u = &e["usageMetadata"];
            assert_eq!(u["promptTokenCount"], p);
            let c = u["candidatesTokenCount"].as_u64().unwrap();
            assert!(c > last_c, "cumulative");
            assert_eq!(u["totalTokenCount"], p + c);
            last_c = c;
            let parts = e["candidates"][0]["content"]["parts"].as_array().unwrap();
            assert_eq!(parts.len(), 1);
            let words = parts[0]["text"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .count();
            assert!((1..=2).contains(&words));
            let last = i + 1 == events.len();
            assert_eq!(e["candidates"][0].get("finishReason").is_some(), last);
            assert_eq!(e["responseId"], events[0]["responseId"]);
        }
        assert_eq!(last_c, expected.split_whitespace().count() as u64);
        assert_eq!(
            events.last().unwrap()["candidates"][0]["finishReason"],
            "STOP"
        );
    }

    #[tokio::test]
    async fn stream_thinking_and_tools() {
        let (app, _) = app(None);
        let (_, text) = send(&app, "POST", STREAM, Some(user("hi [[mock:thinking]]"))).await;
        let events = sse_events(&text);
        assert_eq!(
            events[0]["candidates"][0]["content"]["parts"][0],
            json!({"text": THOUGHT_TEXT, "thought": true})
        );
        assert!(
            events[0]["usageMetadata"]
                .get("candidatesTokenCount")
                .is_none()
        );
        assert_eq!(
            events[0]["usageMetadata"]["thoughtsTokenCount"],
            THOUGHT_TOKENS
        );
        let last = events.last().unwrap();
        assert_eq!(
            last["candidates"][0]["content"]["parts"][0],
            json!({"text": "", "thoughtSignature": TEXT_SIGNATURE})
        );
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        let u = &last["usageMetadata"];
        assert_eq!(
            u["totalTokenCount"].as_u64().unwrap(),
            u["promptTokenCount"].as_u64().unwrap()
                + u["candidatesTokenCount"].as_u64().unwrap()
                + THOUGHT_TOKENS
        );

        let (_, text) = send(&app, "POST", STREAM, Some(user("w [[mock:tools]]"))).await;
        let events = sse_events(&text);
        assert_eq!(events.len(), 1);
        let cand = &events[0]["candidates"][0];
        assert_eq!(
            cand["content"]["parts"][0]["functionCall"]["args"]["city"],
            "Paris"
        );
        assert_eq!(
            cand["content"]["parts"][0]["thoughtSignature"],
            TOOL_SIGNATURE
        );
        assert_eq!(cand["finishReason"], "STOP");

        let (_, text) = send(&app, "POST", STREAM, Some(user("w [[mock:blocked]]"))).await;
        let events = sse_events(&text);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["promptFeedback"]["blockReason"], "SAFETY");
    }

    #[test]
    fn frame_cut_and_garbage() {
        let reply = Reply::new(
            &user("a b c d e f"),
            &Directives::default(),
            "gemini-2.5-flash",
        );
        let events = reply.events();
        let d = Directives::parse("[[mock:cut=2]]");
        let (frames, cut) = frame(&events, true, &d);
        assert!(cut);
        assert_eq!(frames.len(), 2);
        let d = Directives::parse("[[mock:garbage]]");
        let (frames, cut) = frame(&events, true, &d);
        assert!(!cut);
        assert_eq!(frames.len(), 2);
        let garbage = frames[1].strip_prefix("data: ").unwrap().trim_end();
        assert!(serde_json::from_str::<Value>(garbage).is_err());
        // Without alt=sse: one JSON array.
        let (frames, _) = frame(&events, false, &Directives::default());
        let arr: Value = serde_json::from_str(&frames.concat()).unwrap();
        assert_eq!(arr.as_array().unwrap().len(), events.len());
    }

    #[tokio::test]
    async fn stream_cut_drops_the_connection() {
        let (app, _) = app(None);
        let req = Request::builder()
            .method("POST")
            .uri(STREAM)
            .body(Body::from(user("a b c d e f g [[mock:cut=2]]").to_string()))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(collect(resp.into_body()).await.is_err());
    }

    #[tokio::test]
    async fn stream_without_alt_is_an_array() {
        let (app, _) = app(None);
        let (status, v) = post_json(
            &app,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            user("hi"),
        )
        .await;
        assert_eq!(status, 200);
        assert!(v.as_array().unwrap().len() > 1);
    }

    #[tokio::test]
    async fn embeddings_models_and_count() {
        let (app, _) = app(None);
        let (status, v) = post_json(
            &app,
            "/v1beta/models/gemini-embedding-001:embedContent",
            json!({"content": {"parts": [{"text": "hello"}]}}),
        )
        .await;
        assert_eq!(status, 200);
        let one = v["embedding"]["values"].as_array().unwrap().clone();
        assert_eq!(one.len(), 8);
        assert!(one.iter().all(|x| x.as_f64().unwrap().abs() <= 1.0));
        let (status, v) = post_json(
            &app,
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
            json!({"requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello"}]}},
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "world"}]}}
            ]}),
        )
        .await;
        assert_eq!(status, 200);
        let e = v["embeddings"].as_array().unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0]["values"].as_array().unwrap(), &one, "deterministic");
        assert_ne!(e[0]["values"], e[1]["values"]);
        let (status, _) = post_json(
            &app,
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
            json!({"requests": [{"content": {"parts": [{"text": "x"}]}}]}),
        )
        .await;
        assert_eq!(status, 400);

        let (status, text) = send(&app, "GET", "/v1beta/models", None).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&text).unwrap();
        let m = &v["models"][0];
        assert_eq!(m["name"], "models/gemini-2.5-flash");
        assert!(m["displayName"].is_string());
        assert!(
            m["supportedGenerationMethods"]
                .as_array()
                .unwrap()
                .contains(&json!("generateContent"))
        );
        let (status, _) = send(&app, "GET", "/v1beta/models/gemini-2.5-pro", None).await;
        assert_eq!(status, 200);
        let (status, _) = send(&app, "GET", "/v1beta/models/nope", None).await;
        assert_eq!(status, 404);

        let (status, v) = post_json(
            &app,
            "/v1beta/models/gemini-2.5-flash:countTokens",
            user("hello world"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(v["totalTokens"], prompt_tokens(&user("hello world")));
        let (status, _) = post_json(
            &app,
            "/v1beta/models/gemini-2.5-flash:frobnicate",
            user("x"),
        )
        .await;
        assert_eq!(status, 404);
    }
}

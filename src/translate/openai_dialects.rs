//! Fix-ups for providers that speak OpenAI's Chat Completions wire format with an accent (DeepSeek,
//! xAI), so that what reaches the client has OpenAI's shape and meaning. Pure functions over
//! `ChatRequest` and `serde_json::Value`; `providers::openai` calls them only for those kinds, and
//! re-serialises only what they report as changed, so plain OpenAI stays a raw passthrough.
//!
//! What differs, and what is done about it:
//!
//! | | DeepSeek | xAI |
//! |---|---|---|
//! | request | `reasoning_content` on input assistant messages is a 400: stripped (kept where the message has tool calls, which thinking mode requires); on thinking models `logprobs`/`top_logprobs` are refused by the gateway (400, `param` named) and the sampling knobs DeepSeek ignores are dropped | sent as is |
//! | cached input | `prompt_cache_hit_tokens` (older answers lack `prompt_tokens_details`): copied to `prompt_tokens_details.cached_tokens` | already OpenAI's |
//! | reasoning tokens | part of `completion_tokens`, as OpenAI | **not** part of `completion_tokens`: folded in (`total_tokens` already counts them) |
//! | choices | `message.refusal` missing: added as `null` | `logprobs` missing (both kinds of answer), `finish_reason` missing on stream chunks: added as `null` |
//! | stream usage | on the last content chunk, together with `finish_reason`: split into that chunk (usage `null`) and a `choices: []` usage chunk, which the relay drops for clients that did not ask | own `choices: []` chunk, as OpenAI |
//!
//! `reasoning_content` in answers (message and delta) is left where the provider put it; OpenAI SDKs
//! keep unknown fields.

use crate::{config::ProviderKind, domain::ChatRequest, domain::Role};
use serde_json::{Map, Value};

/// Which accent of OpenAI's wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI itself and any `openai-compatible` provider: relayed untouched.
    OpenAi,
    DeepSeek,
    Xai,
}

impl Dialect {
    pub fn of(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::Deepseek => Self::DeepSeek,
            ProviderKind::Xai => Self::Xai,
            ProviderKind::Openai | ProviderKind::OpenaiCompatible | ProviderKind::Gemini => {
                Self::OpenAi
            }
        }
    }
}

/// A request parameter the provider cannot honour with this model; the gateway answers 400 naming
/// it rather than passing the provider's error on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unsupported parameter: '{param}' is not supported with the model '{model}'.")]
pub struct UnsupportedParam {
    pub param: &'static str,
    pub model: String,
}

// ---------------------------------------------------------------------------------------------
// Requests

/// Adjusts a request (whose `model` is already the upstream id) for the provider's dialect.
pub fn prepare_request(dialect: Dialect, req: &mut ChatRequest) -> Result<(), UnsupportedParam> {
    match dialect {
        Dialect::DeepSeek => prepare_deepseek(req),
        Dialect::OpenAi | Dialect::Xai => Ok(()),
    }
}

/// DeepSeek's thinking models: `deepseek-reasoner`, or any model asked for
/// `"thinking": {"type": "enabled"}`.
pub fn deepseek_thinking(req: &ChatRequest) -> bool {
    req.model.contains("reasoner")
        || req
            .extra
            .get("thinking")
            .and_then(|t| t.get("type"))
            .and_then(Value::as_str)
            == Some("enabled")
}

/// DeepSeek request rules:
///
/// - `reasoning_content` on an input assistant message makes DeepSeek answer 400, so it is
///   stripped — except on assistant messages with `tool_calls`, whose reasoning DeepSeek's
///   thinking mode requires to be sent back on later turns.
/// - Thinking models (see [`deepseek_thinking`]) reject `logprobs` and `top_logprobs`: the gateway
///   answers 400 naming the parameter instead of spending a round trip (`logprobs: false` is
///   harmless and simply dropped).
/// - Thinking models accept `temperature`, `top_p`, `presence_penalty` and `frequency_penalty` but
///   document that they have no effect; they are dropped silently, so the request means exactly
///   what DeepSeek will do with it.
fn prepare_deepseek(req: &mut ChatRequest) -> Result<(), UnsupportedParam> {
    for m in &mut req.messages {
        if m.role == Role::Assistant && m.tool_calls.as_ref().is_none_or(Vec::is_empty) {
            m.reasoning_content = None;
        }
    }
    if deepseek_thinking(req) {
        let unsupported = |param| UnsupportedParam {
            param,
            model: req.model.clone(),
        };
        if req.logprobs == Some(true) {
            return Err(unsupported("logprobs"));
        }
        if req.top_logprobs.is_some() {
            return Err(unsupported("top_logprobs"));
        }
        req.logprobs = None;
        req.temperature = None;
        req.top_p = None;
        req.presence_penalty = None;
        req.frequency_penalty = None;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Answers

/// Fixes a non-streaming answer in place; `true` when anything changed (then it must be
/// re-serialised, else the upstream's bytes can be relayed as they are).
pub fn fix_response(dialect: Dialect, body: &mut Value) -> bool {
    if dialect == Dialect::OpenAi {
        return false;
    }
    let mut changed = false;
    if let Some(choices) = body.get_mut("choices").and_then(Value::as_array_mut) {
        for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
            changed |= ensure_null(choice, "logprobs");
            changed |= ensure_null(choice, "finish_reason");
            if let Some(message) = choice.get_mut("message").and_then(Value::as_object_mut) {
                changed |= ensure_null(message, "content");
                changed |= ensure_null(message, "refusal");
            }
        }
    }
    if let Some(usage) = body.get_mut("usage") {
        changed |= fix_usage(dialect, usage);
    }
    changed
}

/// What [`fix_chunk`] did to a stream chunk.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkFix {
    /// Relay the upstream's bytes.
    Unchanged,
    /// The chunk was changed in place; re-serialise it.
    Changed,
    /// The chunk carried choices and usage together: it was changed in place into the choices
    /// part (usage `null`), and this `choices: []` chunk with the usage must follow it.
    Split(Value),
}

/// Fixes one stream chunk in place (see the module docs).
pub fn fix_chunk(dialect: Dialect, chunk: &mut Value) -> ChunkFix {
    if dialect == Dialect::OpenAi {
        return ChunkFix::Unchanged;
    }
    let Some(obj) = chunk.as_object_mut() else {
        return ChunkFix::Unchanged;
    };
    let mut changed = false;
    let mut has_choices = false;
    if let Some(choices) = obj.get_mut("choices").and_then(Value::as_array_mut) {
        has_choices = !choices.is_empty();
        for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
            changed |= ensure_null(choice, "logprobs");
            changed |= ensure_null(choice, "finish_reason");
        }
    }
    let Some(usage) = obj.get_mut("usage").filter(|u| u.is_object()) else {
        return if changed {
            ChunkFix::Changed
        } else {
            ChunkFix::Unchanged
        };
    };
    changed |= fix_usage(dialect, usage);
    if !has_choices {
        return if changed {
            ChunkFix::Changed
        } else {
            ChunkFix::Unchanged
        };
    }
    let usage = std::mem::replace(usage, Value::Null);
    let mut usage_chunk: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "choices" | "usage"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    usage_chunk.insert("choices".into(), Value::Array(Vec::new()));
    usage_chunk.insert("usage".into(), usage);
    ChunkFix::Split(Value::Object(usage_chunk))
}

/// Puts a usage object into OpenAI's meaning in place; `true` when it changed. The provider's own
/// extra fields (`prompt_cache_hit_tokens`, `cost_in_usd_ticks`, …) are kept.
pub fn fix_usage(dialect: Dialect, usage: &mut Value) -> bool {
    let Some(u) = usage.as_object_mut() else {
        return false;
    };
    match dialect {
        Dialect::OpenAi => false,
        Dialect::DeepSeek => cache_hits_as_cached_tokens(u),
        Dialect::Xai => fold_reasoning_into_completion(u),
    }
}

/// DeepSeek: `prompt_cache_hit_tokens` is OpenAI's `prompt_tokens_details.cached_tokens`.
fn cache_hits_as_cached_tokens(u: &mut Map<String, Value>) -> bool {
    let Some(hits) = u.get("prompt_cache_hit_tokens").and_then(Value::as_u64) else {
        return false;
    };
    let details = u
        .entry("prompt_tokens_details")
        .or_insert_with(|| Value::Object(Map::new()));
    if details.is_null() {
        *details = Value::Object(Map::new());
    }
    match details.as_object_mut() {
        Some(d) if !d.get("cached_tokens").is_some_and(Value::is_u64) => {
            d.insert("cached_tokens".into(), hits.into());
            true
        }
        _ => false,
    }
}

/// xAI: `completion_tokens` leaves out `completion_tokens_details.reasoning_tokens` (and
/// `total_tokens` = prompt + completion + reasoning). OpenAI counts reasoning inside
/// `completion_tokens`, so it is added there; the total is then prompt + completion already. A
/// usage whose total is already prompt + completion is in OpenAI's meaning and left alone.
fn fold_reasoning_into_completion(u: &mut Map<String, Value>) -> bool {
    let reasoning = u
        .get("completion_tokens_details")
        .and_then(|d| d.get("reasoning_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let (Some(prompt), Some(completion)) = (
        u.get("prompt_tokens").and_then(Value::as_u64),
        u.get("completion_tokens").and_then(Value::as_u64),
    ) else {
        return false;
    };
    let total = u.get("total_tokens").and_then(Value::as_u64);
    if reasoning == 0 || total == prompt.checked_add(completion) {
        return false;
    }
    // Counts too large to add up are no usage to fix.
    let Some((completion, total)) = completion
        .checked_add(reasoning)
        .and_then(|c| Some((c, prompt.checked_add(c)?)))
    else {
        return false;
    };
    u.insert("completion_tokens".into(), completion.into());
    u.insert("total_tokens".into(), total.into());
    true
}

/// Adds `key: null` when the object lacks the key; `true` when it did.
fn ensure_null(obj: &mut Map<String, Value>, key: &str) -> bool {
    if obj.contains_key(key) {
        return false;
    }
    obj.insert(key.to_string(), Value::Null);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn openai_is_never_touched() {
        let mut body = json!({"choices": [{"index": 0, "message": {"role": "assistant"}}],
                              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 9,
                                        "completion_tokens_details": {"reasoning_tokens": 7}}});
        let before = body.clone();
        assert!(!fix_response(Dialect::OpenAi, &mut body));
        assert_eq!(fix_chunk(Dialect::OpenAi, &mut body), ChunkFix::Unchanged);
        assert_eq!(body, before);
        let mut req =
            request(json!({"model": "deepseek-reasoner", "messages": [], "logprobs": true}));
        assert!(prepare_request(Dialect::OpenAi, &mut req).is_ok());
        assert!(prepare_request(Dialect::Xai, &mut req).is_ok());
    }

    #[test]
    fn deepseek_reasoner_refuses_logprobs_and_drops_ignored_knobs() {
        let mut req =
            request(json!({"model": "deepseek-reasoner", "messages": [], "logprobs": true}));
        let e = prepare_request(Dialect::DeepSeek, &mut req).unwrap_err();
        assert_eq!(e.param, "logprobs");
        let mut req =
            request(json!({"model": "deepseek-reasoner", "messages": [], "top_logprobs": 2}));
        assert_eq!(
            prepare_request(Dialect::DeepSeek, &mut req)
                .unwrap_err()
                .param,
            "top_logprobs"
        );
        let mut req = request(
            json!({"model": "deepseek-v4-pro", "thinking": {"type": "enabled"},
                                     "messages": [], "logprobs": true}),
        );
        assert!(prepare_request(Dialect::DeepSeek, &mut req).is_err());

        let mut req = request(
            json!({"model": "deepseek-reasoner", "messages": [], "logprobs": false,
                                     "temperature": 0.2, "top_p": 0.9, "presence_penalty": 1.0,
                                     "frequency_penalty": 1.0, "max_tokens": 10}),
        );
        prepare_request(Dialect::DeepSeek, &mut req).unwrap();
        let sent = serde_json::to_value(&req).unwrap();
        assert_eq!(
            sent,
            json!({"model": "deepseek-reasoner", "messages": [], "max_tokens": 10})
        );

        // deepseek-chat keeps them all.
        let mut req = request(
            json!({"model": "deepseek-chat", "messages": [], "logprobs": true,
                                     "top_logprobs": 2, "temperature": 0.2}),
        );
        let before = req.clone();
        prepare_request(Dialect::DeepSeek, &mut req).unwrap();
        assert_eq!(req, before);
    }

    #[test]
    fn deepseek_strips_reasoning_content_except_with_tool_calls() {
        let mut req = request(json!({"model": "deepseek-chat", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello", "reasoning_content": "think"},
            {"role": "assistant", "content": "", "reasoning_content": "must stay",
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}
        ]}));
        prepare_request(Dialect::DeepSeek, &mut req).unwrap();
        assert_eq!(req.messages[1].reasoning_content, None);
        assert_eq!(
            req.messages[2].reasoning_content.as_deref(),
            Some("must stay")
        );
    }

    #[test]
    fn xai_usage_is_folded_once() {
        let mut u = json!({"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 241,
                           "completion_tokens_details": {"reasoning_tokens": 228}});
        assert!(fix_usage(Dialect::Xai, &mut u));
        assert_eq!(u["completion_tokens"], 229);
        assert_eq!(u["total_tokens"], 241);
        assert!(
            !fix_usage(Dialect::Xai, &mut u),
            "already in OpenAI's meaning"
        );
        assert_eq!(u["completion_tokens"], 229);
    }

    /// Counts near `u64::MAX` overflowed: a panic in debug builds, nonsense in release.
    #[test]
    fn xai_usage_too_large_to_add_is_left_alone() {
        let max = u64::MAX;
        for mut u in [
            json!({"prompt_tokens": max, "completion_tokens": 1, "total_tokens": 5,
                   "completion_tokens_details": {"reasoning_tokens": 1}}),
            json!({"prompt_tokens": 1, "completion_tokens": max, "total_tokens": 5,
                   "completion_tokens_details": {"reasoning_tokens": 1}}),
            json!({"prompt_tokens": 1, "completion_tokens": 1,
                   "completion_tokens_details": {"reasoning_tokens": max}}),
        ] {
            let before = u.clone();
            assert!(!fix_usage(Dialect::Xai, &mut u));
            assert_eq!(u, before);
        }
    }

    #[test]
    fn deepseek_usage_gets_cached_tokens() {
        let mut u = json!({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12,
                           "prompt_cache_hit_tokens": 6, "prompt_cache_miss_tokens": 4});
        assert!(fix_usage(Dialect::DeepSeek, &mut u));
        assert_eq!(u["prompt_tokens_details"], json!({"cached_tokens": 6}));
        assert_eq!(u["prompt_cache_hit_tokens"], 6);
        assert!(!fix_usage(Dialect::DeepSeek, &mut u));
    }

    #[test]
    fn deepseek_last_chunk_is_split() {
        let mut c = json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-chat",
                           "system_fingerprint": "fp",
                           "choices": [{"index": 0, "delta": {"content": "!"}, "logprobs": null, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
                                     "prompt_tokens_details": {"cached_tokens": 0},
                                     "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 3}});
        let ChunkFix::Split(usage) = fix_chunk(Dialect::DeepSeek, &mut c) else {
            panic!("not split")
        };
        assert_eq!(c["usage"], Value::Null);
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["id"], "x");
        assert_eq!(usage["usage"]["total_tokens"], 5);

        let mut plain = json!({"id": "x", "choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": null,
                                                       "finish_reason": null}], "usage": null});
        assert_eq!(
            fix_chunk(Dialect::DeepSeek, &mut plain),
            ChunkFix::Unchanged
        );
    }
}

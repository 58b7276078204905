//! Token estimates for requests whose upstream never reported usage (a stream the client left, or
//! the upstream cut): such rows are still priced, marked `usage_source = estimated`.
//!
//! OpenAI-family models are counted with OpenAI's own tokenizer (`tiktoken-rs`: `o200k_base` for
//! the GPT-4o/4.1/5 and o-series generation, `cl100k_base` for GPT-4 and 3.5), plus OpenAI's
//! documented per-message overhead. Other providers' tokenizers are not public, so for them the
//! estimate is one token per four bytes of text, OpenAI's own rule of thumb for English.
//!
//! The two tokenizers hold about 60 MB and take a quarter of a second to build, and most gateways
//! rarely need them (OpenAI reports usage; estimates are for streams that end without it and for
//! keys with a budget or a tokens-per-minute limit). So they are built on first need, off the
//! async runtime; estimates made meanwhile use the four-bytes rule.

use crate::{config::ProviderKind, domain::TokenCounts};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};

static LOADING: AtomicBool = AtomicBool::new(false);
static READY: AtomicBool = AtomicBool::new(false);

/// Whether the tokenizers can be used now; starts building them if nobody has yet.
fn tokenizers_ready() -> bool {
    if READY.load(Ordering::Acquire) {
        return true;
    }
    if tokio::runtime::Handle::try_current().is_err() {
        // No runtime to stall (the CLI, unit tests): build them here and wait.
        load();
        return true;
    }
    if !LOADING.swap(true, Ordering::AcqRel) {
        tokio::task::spawn_blocking(load);
    }
    READY.load(Ordering::Acquire)
}

fn load() {
    let _ = tiktoken_rs::o200k_base_singleton();
    let _ = tiktoken_rs::cl100k_base_singleton();
    READY.store(true, Ordering::Release);
}

fn openai_family(kind: ProviderKind, model: &str) -> Option<&'static tiktoken_rs::CoreBPE> {
    if !matches!(kind, ProviderKind::Openai | ProviderKind::OpenaiCompatible) {
        return None;
    }
    let o200k = model.starts_with("gpt-4o")
        || model.starts_with("gpt-4.1")
        || model.starts_with("gpt-5")
        || model.starts_with("chatgpt-")
        || model.starts_with('o');
    let cl100k = !o200k && (model.starts_with("gpt-4") || model.starts_with("gpt-3.5"));
    if !(o200k || cl100k) || !tokenizers_ready() {
        return None;
    }
    Some(if o200k {
        tiktoken_rs::o200k_base_singleton()
    } else {
        tiktoken_rs::cl100k_base_singleton()
    })
}

fn count(bpe: Option<&tiktoken_rs::CoreBPE>, text: &str) -> u64 {
    match bpe {
        Some(b) => b.encode_ordinary(text).len() as u64,
        None => (text.len() as u64).div_ceil(4),
    }
}

/// Every string in the request's messages (text, tool arguments, names), each counted on its own
/// as the model sees them; inline media (data URLs) is not text and is skipped.
fn message_strings(messages: &Value) -> (Vec<&str>, usize) {
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) if !s.starts_with("data:") => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o
                .iter()
                .filter(|(k, _)| *k != "type" && *k != "role")
                .for_each(|(_, x)| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(messages, &mut out);
    (out, messages.as_array().map_or(0, Vec::len))
}

/// Estimates usage from the raw request body and the completion text streamed so far.
pub fn estimate(
    kind: ProviderKind,
    model: &str,
    request_body: &[u8],
    completion: &str,
) -> TokenCounts {
    let bpe = openai_family(kind, model);
    let messages = serde_json::from_slice::<Value>(request_body)
        .ok()
        // Chat messages, or an embeddings request's input.
        .and_then(|mut v| {
            let key = if v.get("messages").is_some() {
                "messages"
            } else {
                "input"
            };
            v.get_mut(key).map(Value::take)
        })
        .unwrap_or(Value::Null);
    let (strings, n_messages) = message_strings(&messages);
    // OpenAI's accounting: 3 tokens of framing per message, 3 to prime the reply.
    let prompt = strings.iter().map(|s| count(bpe, s)).sum::<u64>() + 3 * n_messages as u64 + 3;
    TokenCounts {
        prompt,
        completion: count(bpe, completion),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_models_use_the_real_tokenizer() {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello, world!"}]}"#;
        let t = estimate(
            ProviderKind::Openai,
            "gpt-4o",
            body,
            "Hi there, how can I help?",
        );
        // "Hello, world!" is 4 tokens in o200k_base; + 3 per message + 3.
        assert_eq!(t.prompt, 4 + 3 + 3);
        assert_eq!(t.completion, 8);
    }

    #[test]
    fn others_use_four_bytes_per_token() {
        let body =
            br#"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"12345678"}]}"#;
        let t = estimate(ProviderKind::Gemini, "gemini-2.5-flash", body, "abcdefgh");
        assert_eq!(t.completion, 2);
        assert_eq!(t.prompt, 2 + 3 + 3);
    }
}

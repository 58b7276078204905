//! DeepSeek and xAI end to end: the gateway in front of the mock speaking each dialect, checked from
//! an OpenAI client's point of view (shape and token meaning) and in the request log.

use crate::helpers::*;
use gophergate::{
    config::ProviderConfig,
    mock::{Dialect, MockConfig},
};
use serde_json::{Value, json};

/// An app whose `provider` (`deepseek` or `xai`) points at a mock speaking `dialect`, holding
/// `gateway_key` for it (the mock accepts only `UPSTREAM_KEY`).
async fn spawn_dialect(dialect: Dialect, provider: &'static str, gateway_key: &str) -> TestApp {
    let key = gateway_key.to_string();
    spawn_app_with(
        MockConfig {
            dialect,
            api_key: Some(UPSTREAM_KEY.into()),
            ..Default::default()
        },
        move |config| {
            // Every dialect of the mock lives under `/v1`, like the OpenAI one already configured.
            let base_url = config.providers["openai"].base_url.clone();
            config.providers.insert(
                provider.into(),
                ProviderConfig {
                    base_url,
                    api_key: Some(key.into()),
                    ..Default::default()
                },
            );
        },
    )
    .await
}

async fn deepseek() -> TestApp {
    spawn_dialect(Dialect::DeepSeek, "deepseek", UPSTREAM_KEY).await
}

async fn xai() -> TestApp {
    spawn_dialect(Dialect::Xai, "xai", UPSTREAM_KEY).await
}

fn ask(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

/// The JSON chunks of an SSE body (which must end with `[DONE]`).
fn chunks(text: &str) -> Vec<Value> {
    let data = sse_data(text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// OpenAI's non-stream schema: choice and message keys, usage in OpenAI's meaning.
fn assert_openai_body(body: &Value) {
    assert_eq!(body["object"], "chat.completion");
    for c in body["choices"].as_array().unwrap() {
        let c = c.as_object().unwrap();
        for k in ["index", "message", "finish_reason", "logprobs"] {
            assert!(c.contains_key(k), "choice lacks `{k}`: {body}");
        }
        for k in ["role", "content", "refusal"] {
            assert!(
                c["message"].as_object().unwrap().contains_key(k),
                "message lacks `{k}`: {body}"
            );
        }
    }
    assert_openai_usage(&body["usage"]);
}

fn assert_openai_usage(u: &Value) {
    assert_eq!(
        n(&u["total_tokens"]),
        n(&u["prompt_tokens"]) + n(&u["completion_tokens"]),
        "total is prompt + completion: {u}"
    );
    let reasoning = u["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap_or(0);
    assert!(reasoning <= n(&u["completion_tokens"]), "{u}");
    assert!(
        n(&u["prompt_tokens_details"]["cached_tokens"]) <= n(&u["prompt_tokens"]),
        "{u}"
    );
}

/// The log row's tokens equal the usage the client saw.
fn assert_row_matches(row: &gophergate::store::LogRow, u: &Value) {
    let t = row.usage.expect("the row has usage");
    assert_eq!(t.prompt, n(&u["prompt_tokens"]));
    assert_eq!(t.completion, n(&u["completion_tokens"]));
    assert_eq!(t.cached, n(&u["prompt_tokens_details"]["cached_tokens"]));
    assert_eq!(
        t.reasoning,
        u["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap_or(0)
    );
}

// -------------------------------------------------------------------------------------------
// DeepSeek

#[tokio::test]
async fn deepseek_chat_answer_is_openai_shaped_with_cached_tokens() {
    let t = deepseek().await;
    let resp = t
        .chat(ask("deepseek-chat", "hello deepseek [[mock:cache=5]]"))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_openai_body(&body);
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("hello deepseek")
    );
    let u = &body["usage"];
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 5);
    assert_eq!(
        u["prompt_cache_hit_tokens"], 5,
        "DeepSeek's own field is kept"
    );

    let sent = t.mock.state.last_request().unwrap();
    assert_eq!(sent["model"], "deepseek-chat");
    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert_eq!(row.status, 200);
    assert_eq!(row.provider.as_deref(), Some("deepseek"));
    assert_eq!(row.model.as_deref(), Some("deepseek-chat"));
    assert_eq!(row.upstream_model.as_deref(), Some("deepseek-chat"));
    assert_row_matches(row, u);
    assert_eq!(row.usage.unwrap().cached, 5);
}

#[tokio::test]
async fn deepseek_reasoner_answer_keeps_reasoning_and_cleans_the_request() {
    let t = deepseek().await;
    let resp = t
        .chat(json!({
            "model": "deepseek-reasoner",
            "messages": [
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer", "reasoning_content": "earlier thoughts"},
                {"role": "user", "content": "second question [[mock:keepalive=3]]"}
            ],
            "temperature": 0.4,
            "top_p": 0.8,
            "presence_penalty": 0.1,
            "frequency_penalty": 0.1,
            "max_tokens": 300
        }))
        .await;
    // The mock answers 400 when `reasoning_content` is sent back, as DeepSeek does.
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_openai_body(&body);
    let message = &body["choices"][0]["message"];
    assert!(
        message["reasoning_content"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(
        message["content"]
            .as_str()
            .unwrap()
            .contains("second question")
    );
    let u = &body["usage"];
    let reasoning = n(&u["completion_tokens_details"]["reasoning_tokens"]);
    assert!(
        reasoning > 0 && n(&u["completion_tokens"]) > reasoning,
        "{u}"
    );

    let sent = t.mock.state.last_request().unwrap();
    assert!(
        sent["messages"][1].get("reasoning_content").is_none(),
        "{sent}"
    );
    for ignored in [
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
    ] {
        assert!(sent.get(ignored).is_none(), "{ignored} was sent: {sent}");
    }
    assert_eq!(sent["max_tokens"], 300);

    let rows = t.exact_logs(1).await;
    assert_row_matches(&rows[0].row, u);
    assert_eq!(rows[0].row.usage.unwrap().reasoning, reasoning);
}

#[tokio::test]
async fn deepseek_reasoner_stream_hides_usage_unless_asked() {
    let t = deepseek().await;
    let mut req = ask("deepseek-reasoner", "stream it [[mock:keepalive=2]]");
    req["stream"] = json!(true);
    let resp = t.chat(req).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let chunks = chunks(&text);
    assert!(
        chunks.iter().all(|c| c["usage"].is_null()),
        "a usage chunk reached a client that did not ask: {text}"
    );
    assert!(
        chunks
            .iter()
            .all(|c| !c["choices"].as_array().unwrap().is_empty())
    );
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!reasoning.is_empty(), "{text}");
    assert!(content.contains("stream it"), "{text}");
    // Reasoning comes first, then the answer.
    let first_content = chunks
        .iter()
        .position(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .unwrap();
    let last_reasoning = chunks
        .iter()
        .rposition(|c| {
            c["choices"][0]["delta"]["reasoning_content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .unwrap();
    assert!(last_reasoning < first_content);
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0]["choices"][0]["finish_reason"], "stop");

    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert!(row.stream);
    assert_eq!(row.error, None);
    let u = row.usage.expect("usage was still read from the stream");
    assert!(u.reasoning > 0 && u.completion > u.reasoning, "{u:?}");
}

#[tokio::test]
async fn deepseek_stream_usage_chunk_when_asked() {
    let t = deepseek().await;
    let mut req = ask("deepseek-chat", "count my tokens [[mock:cache=4]]");
    req["stream"] = json!(true);
    req["stream_options"] = json!({"include_usage": true});
    let text = t.chat(req).await.text().await.unwrap();
    let chunks = chunks(&text);
    let with_usage: Vec<&Value> = chunks.iter().filter(|c| !c["usage"].is_null()).collect();
    assert_eq!(with_usage.len(), 1, "{text}");
    let last = chunks.last().unwrap();
    assert_eq!(
        last["choices"],
        json!([]),
        "the usage chunk comes last: {text}"
    );
    let u = &last["usage"];
    assert_openai_usage(u);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 4);
    // The finish chunk comes right before it, without usage.
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish["usage"].is_null());

    let rows = t.exact_logs(1).await;
    assert_row_matches(&rows[0].row, u);
}

#[tokio::test]
async fn deepseek_reasoner_refuses_logprobs_itself() {
    let t = deepseek().await;
    for param in ["logprobs", "top_logprobs"] {
        let mut req = ask("deepseek-reasoner", "hi");
        req["logprobs"] = json!(true);
        if param == "top_logprobs" {
            req["logprobs"] = json!(false);
            req["top_logprobs"] = json!(2);
        }
        let resp = t.chat(req).await;
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        let err = openai_error(&body);
        assert_eq!(err["param"], param, "{body}");
        assert_eq!(err["code"], "unsupported_parameter");
        assert_eq!(err["type"], "invalid_request_error");
    }
    assert!(
        t.mock.state.requests().is_empty(),
        "nothing is sent upstream"
    );
    let rows = t.exact_logs(2).await;
    assert!(rows.iter().all(|r| r.row.status == 400));

    // deepseek-chat supports logprobs: passed through.
    let mut req = ask("deepseek-chat", "hi");
    req["logprobs"] = json!(true);
    assert_eq!(t.chat(req).await.status(), 200);
    assert_eq!(t.mock.state.last_request().unwrap()["logprobs"], true);
}

#[tokio::test]
async fn deepseek_insufficient_balance_is_402_with_its_message() {
    let t = deepseek().await;
    let resp = t
        .chat(ask("deepseek-chat", "pay up [[mock:error=402]]"))
        .await;
    assert_eq!(resp.status(), 402);
    let body: Value = resp.json().await.unwrap();
    let err = openai_error(&body);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("Insufficient Balance"),
        "{body}"
    );
    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.status, 402);
}

#[tokio::test]
async fn deepseek_bad_key_is_upstream_auth_failed() {
    let gateway_key = "sk-deepseek-wrong-key-98765";
    let t = spawn_dialect(Dialect::DeepSeek, "deepseek", gateway_key).await;
    let resp = t.chat(ask("deepseek-chat", "hi")).await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let err = openai_error(&body);
    assert_eq!(err["code"], "upstream_auth_failed");
    assert!(err["message"].as_str().unwrap().contains("deepseek"));
    assert!(
        !text.contains("8765") && !text.contains("wrong-key"),
        "{text}"
    );
}

// -------------------------------------------------------------------------------------------
// xAI

#[tokio::test]
async fn xai_reasoning_tokens_are_folded_into_completion() {
    let t = xai().await;
    let resp = t
        .chat(ask("grok-3-mini", "hello grok [[mock:cache=3]]"))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_openai_body(&body);
    assert!(body["choices"][0]["logprobs"].is_null());
    let message = &body["choices"][0]["message"];
    assert!(
        message["reasoning_content"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    let visible = message["content"].as_str().unwrap();
    assert!(visible.contains("hello grok"));
    let u = &body["usage"];
    let reasoning = n(&u["completion_tokens_details"]["reasoning_tokens"]);
    assert!(reasoning > 0);
    // The mock counts one token per word of the visible answer.
    let visible_tokens = visible.split_inclusive(' ').count() as u64;
    assert_eq!(
        n(&u["completion_tokens"]),
        visible_tokens + reasoning,
        "{u}"
    );
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 3);

    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert_eq!(row.provider.as_deref(), Some("xai"));
    assert_row_matches(row, u);
    assert_eq!(row.usage.unwrap().completion, visible_tokens + reasoning);
}

#[tokio::test]
async fn xai_stream_chunks_are_openai_shaped() {
    let t = xai().await;
    let mut req = ask("grok-3-mini", "stream grok");
    req["stream"] = json!(true);
    req["stream_options"] = json!({"include_usage": true});
    let text = t.chat(req.clone()).await.text().await.unwrap();
    let chunks = chunks(&text);
    for c in &chunks {
        for choice in c["choices"].as_array().unwrap() {
            let choice = choice.as_object().unwrap();
            assert!(choice.contains_key("finish_reason"), "{c}");
            assert!(choice.contains_key("logprobs"), "{c}");
        }
    }
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert!(!reasoning.is_empty());
    let with_usage: Vec<&Value> = chunks.iter().filter(|c| !c["usage"].is_null()).collect();
    assert_eq!(with_usage.len(), 1);
    assert_eq!(with_usage[0]["choices"], json!([]));
    let u = &with_usage[0]["usage"];
    assert_openai_usage(u);
    assert!(n(&u["completion_tokens"]) > n(&u["completion_tokens_details"]["reasoning_tokens"]));
    let rows = t.exact_logs(1).await;
    assert_row_matches(&rows[0].row, u);

    // Not asked: no usage chunk, but the row still has the folded counts.
    req["stream_options"] = json!({"include_usage": false});
    let text = t.chat(req).await.text().await.unwrap();
    assert!(chunks_without_usage(&text));
    let rows = t.exact_logs(2).await;
    assert_row_matches(&rows[0].row, u);
}

fn chunks_without_usage(text: &str) -> bool {
    chunks(text)
        .iter()
        .all(|c| c["usage"].is_null() && !c["choices"].as_array().unwrap().is_empty())
}

#[tokio::test]
async fn xai_tool_call_stream_arrives_whole() {
    let t = xai().await;
    let mut req = ask("grok-4", "weather? [[mock:tools]]");
    req["stream"] = json!(true);
    let text = t.chat(req).await.text().await.unwrap();
    let chunks = chunks(&text);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 1, "{text}");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["index"], 0);
    assert!(
        serde_json::from_str::<Value>(calls[0]["function"]["arguments"].as_str().unwrap()).is_ok()
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
    let rows = t.exact_logs(1).await;
    let u = rows[0].row.usage.unwrap();
    assert!(
        u.reasoning > 0 && u.completion > u.reasoning,
        "grok-4 reasons: {u:?}"
    );
}

#[tokio::test]
async fn xai_bad_key_is_upstream_auth_failed_without_the_key() {
    let gateway_key = "xai-wrong-gateway-key-4242";
    let t = spawn_dialect(Dialect::Xai, "xai", gateway_key).await;
    let resp = t.chat(ask("grok-3-mini", "hi")).await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let err = openai_error(&body);
    assert_eq!(err["code"], "upstream_auth_failed");
    assert!(err["message"].as_str().unwrap().contains("xai"), "{text}");
    assert!(!text.contains("Incorrect API key"), "{text}");
    assert!(!text.contains("xa***") && !text.contains("42."), "{text}");
    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert_eq!(row.status, 502);
    let logged = row.error.as_deref().unwrap();
    assert!(logged.contains("upstream_auth_failed"), "{logged}");
    assert!(
        !logged.contains("xa***") && !logged.contains("Incorrect"),
        "{logged}"
    );
}

//! Gemini end to end: OpenAI-shaped requests in, the native Gemini API (mock) upstream, OpenAI-shaped
//! answers out.

use crate::helpers::*;
use gophergate::{
    config::ProviderConfig,
    mock::{Dialect, MockConfig, MockServer},
};
use serde_json::{Value, json};

const GEMINI_KEY: &str = "AIza-gemini-upstream-key-000";

async fn gemini_app(key: &str) -> (TestApp, MockServer) {
    let mock = MockServer::start(MockConfig {
        dialect: Dialect::Gemini,
        api_key: Some(GEMINI_KEY.into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let base = mock.base_url();
    let key = key.to_string();
    let t = spawn_app_with(MockConfig::default(), move |c| {
        // These tests check how each answer is translated: no retries (which would repeat a fault
        // directive) and no circuit breaking (tests/api/resilience.rs covers both).
        c.retry.max_retries = 0;
        c.health.failure_threshold = 1000;
        c.providers.insert(
            "gemini".into(),
            ProviderConfig {
                base_url: Some(base),
                api_key: Some(key.into()),
                ..Default::default()
            },
        );
    })
    .await;
    (t, mock)
}

fn req(text: &str) -> Value {
    json!({"model": "gemini-2.5-flash", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": text}
    ]})
}

#[tokio::test]
async fn text_answer_and_usage_in_openai_shape() {
    let (t, mock) = gemini_app(GEMINI_KEY).await;
    let resp = t.chat(req("hello gemini")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let msg = &body["choices"][0]["message"];
    assert_eq!(msg["role"], "assistant");
    assert!(msg["content"].as_str().unwrap().contains("hello gemini"));
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let u = &body["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );

    // The upstream got Gemini's native shape.
    let sent = mock.state.last_request().unwrap();
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(sent["contents"][0]["role"], "user");
    assert_eq!(sent["contents"][0]["parts"][0]["text"], "hello gemini");

    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert_eq!(row.provider.as_deref(), Some("gemini"));
    assert_eq!(row.status, 200);
    let counts = row.usage.unwrap();
    assert_eq!(counts.prompt, u["prompt_tokens"].as_u64().unwrap());
    assert_eq!(counts.completion, u["completion_tokens"].as_u64().unwrap());
}

#[tokio::test]
async fn thinking_tokens_are_completion_tokens_and_thoughts_are_reasoning_content() {
    let (t, _mock) = gemini_app(GEMINI_KEY).await;
    let mut r = req("think [[mock:thinking]] [[mock:cache=2]]");
    r["reasoning_effort"] = json!("low");
    let body: Value = t.chat(r).await.json().await.unwrap();
    let msg = &body["choices"][0]["message"];
    assert!(!msg["reasoning_content"].as_str().unwrap().is_empty());
    assert!(!msg["content"].as_str().unwrap().contains("Let me think"));
    let u = &body["usage"];
    let reasoning = u["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert!(reasoning > 0);
    assert!(u["completion_tokens"].as_u64().unwrap() > reasoning);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 2);
    let rows = t.exact_logs(1).await;
    let c = rows[0].row.usage.unwrap();
    assert_eq!(c.reasoning, reasoning);
    assert_eq!(c.cached, 2);
}

#[tokio::test]
async fn streaming_emits_openai_chunks_and_done() {
    let (t, _mock) = gemini_app(GEMINI_KEY).await;
    let mut r = req("stream from gemini please");
    r["stream"] = json!(true);
    r["stream_options"] = json!({"include_usage": true});
    let resp = t.chat(r.clone()).await;
    assert_eq!(resp.status(), 200);
    let data = sse_data(&resp.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let ids: std::collections::HashSet<_> = chunks
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "all chunks share one id");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.contains("stream from gemini please"), "{text}");
    let finishes: Vec<_> = chunks
        .iter()
        .filter(|c| c["choices"][0]["finish_reason"].is_string())
        .collect();
    assert_eq!(finishes.len(), 1);
    let usage: Vec<_> = chunks
        .iter()
        .filter(|c| c.get("usage").is_some_and(|u| !u.is_null()))
        .collect();
    assert_eq!(usage.len(), 1, "cumulative usage is sent once, at the end");
    assert_eq!(usage[0]["choices"], json!([]));

    // Without include_usage: no usage chunk, but the log still has the tokens.
    r["stream_options"] = json!(null);
    let data = sse_data(&t.chat(r).await.text().await.unwrap());
    assert!(
        data.iter()
            .filter(|d| *d != "[DONE]")
            .all(|d| !d.contains("\"usage\""))
    );
    let rows = t.exact_logs(2).await;
    assert!(
        rows.iter()
            .all(|r| r.row.usage.is_some() && r.row.ttft_ms.is_some())
    );
}

#[tokio::test]
async fn tool_calls_round_trip_with_thought_signatures() {
    let (t, mock) = gemini_app(GEMINI_KEY).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}}]);
    let first = json!({"model": "gemini-2.5-flash", "reasoning_effort": "low", "tools": tools,
        "messages": [{"role": "user", "content": "Weather in Paris? [[mock:tools]]"}]});
    let body: Value = t.chat(first.clone()).await.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let call = body["choices"][0]["message"]["tool_calls"][0].clone();
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap()["city"],
        "Paris"
    );
    let sent = mock.state.last_request().unwrap();
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["parameters"]["type"],
        "OBJECT"
    );
    assert!(
        sent["tools"][0]["functionDeclarations"][0]["parameters"]
            .get("additionalProperties")
            .is_none()
    );

    // A client that rebuilds the assistant message from id/type/function only (as most do).
    let echoed = json!({"id": call["id"], "type": "function", "function": call["function"]});
    let mut second = first.clone();
    second["messages"] = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [echoed]},
        {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp_c\": 21}"}
    ]);
    let resp = t.chat(second).await;
    assert_eq!(
        resp.status(),
        200,
        "the thought signature must survive the round trip"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "The weather is fine."
    );
    let sent = mock.state.last_request().unwrap();
    let parts = &sent["contents"][2]["parts"][0]["functionResponse"];
    assert_eq!(
        parts["name"], "get_weather",
        "the function name is recovered from the call id"
    );
    assert_eq!(parts["response"]["temp_c"], 21);
}

#[tokio::test]
async fn images_become_inline_data() {
    let (t, mock) = gemini_app(GEMINI_KEY).await;
    let r = json!({"model": "gemini/gemini-2.5-flash", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]});
    assert_eq!(t.chat(r).await.status(), 200);
    let sent = mock.state.last_request().unwrap();
    assert_eq!(
        sent["contents"][0]["parts"][1]["inlineData"]["mimeType"],
        "image/png"
    );
    assert_eq!(
        sent["contents"][0]["parts"][1]["inlineData"]["data"],
        "iVBORw0KGgo="
    );
}

#[tokio::test]
async fn safety_block_is_content_filter() {
    let (t, _mock) = gemini_app(GEMINI_KEY).await;
    let body: Value = t.chat(req("[[mock:blocked]]")).await.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
}

#[tokio::test]
async fn errors_are_mapped() {
    let (t, _mock) = gemini_app("AIza-wrong-key").await;
    let resp = t.chat(req("hi")).await;
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "upstream_auth_failed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gemini")
    );
    assert!(
        !text.contains("AIza"),
        "no part of the key is echoed: {text}"
    );

    let (t, _mock) = gemini_app(GEMINI_KEY).await;
    let resp = t.chat(req("[[mock:error=429]]")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let resp = t.chat(req("[[mock:error=503]]")).await;
    assert_eq!(resp.status(), 503);

    // Something Gemini cannot do is a 400 naming the parameter, before any upstream call.
    let mut r = req("hi");
    r["logit_bias"] = json!({"50256": -100});
    let resp = t.chat(r).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["param"], "logit_bias");
}

#[tokio::test]
async fn a_stream_cut_by_gemini_ends_with_an_error_event() {
    let (t, _mock) = gemini_app(GEMINI_KEY).await;
    let mut r = req("one two three four five six seven [[mock:cut=2]]");
    r["stream"] = json!(true);
    let resp = t.chat(r).await;
    assert_eq!(resp.status(), 200);
    let data = sse_data(&resp.text().await.unwrap());
    assert!(
        !data.iter().any(|d| d == "[DONE]"),
        "a cut stream must not look complete"
    );
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(last["error"]["code"].is_string(), "{last}");
    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.status, 200);
    assert!(rows[0].row.error.is_some());
}

use crate::helpers::*;
use serde_json::{Value, json};

#[tokio::test]
async fn non_streaming_chat_is_relayed_and_logged() {
    let t = spawn_app().await;
    let mut req = user_msg("ping");
    // Fields the gateway does not interpret reach an OpenAI-compatible upstream untouched.
    req["metadata"] = json!({"team": "search"});
    req["service_tier"] = json!("flex");
    let resp = t.chat(req).await;
    assert_eq!(resp.status(), 200);
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("ping")
    );
    let usage = &body["usage"];

    // The upstream got the model id and the gateway's key, not the client's.
    let sent = t.mock.state.last_request().unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert_eq!(sent["metadata"], json!({"team": "search"}));
    assert_eq!(sent["service_tier"], "flex");

    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert_eq!(row.request_id, rid);
    assert_eq!(row.status, 200);
    assert_eq!(row.key_name.as_deref(), Some("default"));
    assert_eq!(row.provider.as_deref(), Some("openai"));
    assert_eq!(row.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        row.upstream_model.as_deref(),
        Some("gpt-4o-mini-2024-07-18")
    );
    assert!(!row.stream);
    assert_eq!(row.ttft_ms, None);
    let u = row.usage.unwrap();
    assert_eq!(u.prompt, usage["prompt_tokens"].as_u64().unwrap());
    assert_eq!(u.completion, usage["completion_tokens"].as_u64().unwrap());
    assert_eq!(row.usage_source, Some("reported"));
    assert_eq!(row.error, None);
}

#[tokio::test]
async fn streaming_relays_chunks_and_hides_usage_unless_asked() {
    let t = spawn_app().await;
    let mut req = user_msg("stream me");
    req["stream"] = json!(true);
    let resp = t.chat(req.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks.iter().all(|c| c["usage"].is_null()),
        "usage chunk leaked: {text}"
    );
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(content.contains("stream me"));
    // Usage was still requested upstream, so the row has tokens.
    let sent = t.mock.state.last_request().unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let rows = t.exact_logs(1).await;
    assert!(rows[0].row.stream);
    assert!(rows[0].row.usage.is_some());
    assert!(rows[0].row.ttft_ms.is_some());

    // Asked for: exactly one usage chunk, with empty choices, before [DONE].
    req["stream_options"] = json!({"include_usage": true});
    let text = t.chat(req).await.text().await.unwrap();
    let data = sse_data(&text);
    let usage_chunks: Vec<Value> = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|c| !c["usage"].is_null())
        .collect();
    assert_eq!(usage_chunks.len(), 1);
    assert_eq!(usage_chunks[0]["choices"], json!([]));
    let rows = t.exact_logs(2).await;
    assert_eq!(
        rows[0].row.usage.unwrap().completion,
        usage_chunks[0]["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
    );
}

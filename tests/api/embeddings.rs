//! `/v1/embeddings` for OpenAI (relayed) and Gemini (`batchEmbedContents`).

use crate::helpers::*;
use base64::Engine;
use gophergate::{
    config::ProviderConfig,
    mock::{Dialect, MockConfig, MockServer},
};
use serde_json::{Value, json};

async fn embed(t: &TestApp, body: Value) -> reqwest::Response {
    t.http
        .post(t.url("/v1/embeddings"))
        .bearer_auth(&t.key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn openai_embeddings_are_relayed_and_logged() {
    let t = spawn_app().await;
    let resp = embed(
        &t,
        json!({"model": "text-embedding-3-small", "input": ["alpha", "beta"]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let cost_header: Option<f64> = resp
        .headers()
        .get("x-gophergate-cost-usd")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["index"], 1);
    let tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.provider.as_deref(), Some("openai"));
    assert_eq!(rows[0].row.usage.unwrap().prompt, tokens);
    assert_eq!(rows[0].row.usage_source, Some("reported"));
    // Like a chat answer, the embeddings answer carries the cost its log row records.
    let cost = rows[0]
        .row
        .cost_usd
        .expect("text-embedding-3-small is priced");
    assert!(cost > 0.0);
    let header = cost_header.expect("x-gophergate-cost-usd on the answer");
    assert!((header - cost).abs() < 1e-12, "{header} vs {cost}");

    let resp = embed(&t, json!({"model": "text-embedding-3-small"})).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["param"], "input");
}

#[tokio::test]
async fn gemini_embeddings_use_batch_embed_contents() {
    let mock = MockServer::start(MockConfig {
        dialect: Dialect::Gemini,
        api_key: Some("g-key-123456".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let base = mock.base_url();
    let t = spawn_app_with(MockConfig::default(), move |c| {
        c.providers.insert(
            "gemini".into(),
            ProviderConfig {
                base_url: Some(base),
                api_key: Some("g-key-123456".to_string().into()),
                ..Default::default()
            },
        );
    })
    .await;
    let resp = embed(&t, json!({"model": "gemini/gemini-embedding-001", "input": ["one", "two", "three"], "dimensions": 8})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 8);
    let sent = mock.state.last_request().unwrap();
    assert_eq!(sent["requests"][2]["content"]["parts"][0]["text"], "three");
    assert_eq!(sent["requests"][0]["model"], "models/gemini-embedding-001");

    // base64: little-endian f32s of the same vector.
    let resp = embed(&t, json!({"model": "gemini/gemini-embedding-001", "input": "one", "encoding_format": "base64"})).await;
    let b64: Value = resp.json().await.unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let first: Vec<f32> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(floats, first);

    let rows = t.exact_logs(2).await;
    assert_eq!(
        rows[0].row.usage_source,
        Some("estimated"),
        "Gemini reports no usage for embeddings"
    );

    // Token ids cannot be embedded by Gemini: a 400 naming the parameter.
    let resp = embed(
        &t,
        json!({"model": "gemini/gemini-embedding-001", "input": [1, 2, 3]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["param"], "input");
}

//! Every way a `/v1` request fails: the status, the OpenAI-shaped body, and exactly one log row.

use crate::helpers::*;
use gophergate::store::LogRow;
use serde_json::{Value, json};
use std::time::Duration;

/// The one log row of a failed request: with this status and an error.
async fn one_error_row(t: &TestApp, status: u16) -> LogRow {
    let rows = t.exact_logs(1).await;
    let row = rows[0].row.clone();
    assert_eq!(row.status, status, "{row:?}");
    assert!(
        row.error.as_deref().is_some_and(|e| !e.is_empty()),
        "{row:?}"
    );
    assert_eq!(row.key_name.as_deref(), Some("default"));
    row
}

/// Status and error object of a response, checking the OpenAI shape.
async fn error_of(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    assert_eq!(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        "application/json",
        "status {status}"
    );
    let body: Value = resp.json().await.unwrap();
    openai_error(&body);
    (status, headers, body["error"].clone())
}

#[tokio::test]
async fn invalid_json_is_400_without_param() {
    let t = spawn_app().await;
    let (status, _, err) = error_of(t.post_raw("/v1/chat/completions", "{\"model\": ").await).await;
    assert_eq!(status, 400);
    assert_eq!(err["type"], "invalid_request_error");
    assert!(err["param"].is_null(), "{err}");
    one_error_row(&t, 400).await;
    assert!(t.mock.state.requests().is_empty());
}

#[tokio::test]
async fn missing_model_is_400_naming_model() {
    let t = spawn_app().await;
    let resp = t
        .chat(json!({"messages": [{"role": "user", "content": "hi"}]}))
        .await;
    let (status, _, err) = error_of(resp).await;
    assert_eq!(status, 400);
    assert_eq!(err["param"], "model");
    one_error_row(&t, 400).await;
}

#[tokio::test]
async fn missing_messages_is_400_naming_messages() {
    let t = spawn_app().await;
    let (status, _, err) = error_of(t.chat(json!({"model": "gpt-4o-mini"})).await).await;
    assert_eq!(status, 400);
    assert_eq!(err["param"], "messages");
    let row = one_error_row(&t, 400).await;
    assert!(row.error.unwrap().contains("messages"));
}

#[tokio::test]
async fn wrong_type_is_400_naming_the_field() {
    let t = spawn_app().await;
    let mut req = user_msg("hi");
    req["temperature"] = json!("hot");
    let (status, _, err) = error_of(t.chat(req).await).await;
    assert_eq!(status, 400);
    assert_eq!(err["param"], "temperature");
    assert!(err["message"].as_str().unwrap().contains("temperature"));
    one_error_row(&t, 400).await;
    assert!(t.mock.state.requests().is_empty());
}

fn padded_request(size: usize) -> String {
    let mut body = user_msg("").to_string();
    let pad = "x".repeat(size - body.len());
    body = user_msg(&pad).to_string();
    assert_eq!(body.len(), size);
    body
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let t = spawn_app_with(Default::default(), |c| c.server.max_body_bytes = 2048).await;
    // Just under the limit is fine.
    let resp = t
        .post_raw("/v1/chat/completions", padded_request(2000))
        .await;
    assert_eq!(resp.status(), 200);

    let resp = t
        .post_raw("/v1/chat/completions", padded_request(4096))
        .await;
    let (status, _, err) = error_of(resp).await;
    assert_eq!(status, 413);
    assert_eq!(err["code"], "request_too_large");
    let rows = t.exact_logs(2).await;
    assert_eq!(rows[0].row.status, 413);
    assert!(rows[0].row.error.is_some());
    // Only the first request went upstream.
    assert_eq!(t.mock.state.requests().len(), 1);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let t = spawn_app_with(Default::default(), |c| c.server.max_body_bytes = 2048).await;
    let body = padded_request(4096).into_bytes();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(512).map(|c| Ok(c.to_vec())).collect();
    let resp = t
        .post_raw(
            "/v1/chat/completions",
            reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        )
        .await;
    let (status, _, _) = error_of(resp).await;
    assert_eq!(status, 413);
    one_error_row(&t, 413).await;
}

#[tokio::test]
async fn unknown_model_is_404_model_not_found() {
    let t = spawn_app().await;
    let mut req = user_msg("hi");
    req["model"] = json!("no-such-model");
    let (status, _, err) = error_of(t.chat(req).await).await;
    assert_eq!(status, 404);
    assert_eq!(err["code"], "model_not_found");
    assert!(err["message"].as_str().unwrap().contains("no-such-model"));
    let row = one_error_row(&t, 404).await;
    assert_eq!(row.model.as_deref(), Some("no-such-model"));
    assert!(t.mock.state.requests().is_empty());

    // An unknown provider prefix is an unknown model too.
    let mut req = user_msg("hi");
    req["model"] = json!("nowhere/gpt-4o");
    let (status, _, err) = error_of(t.chat(req).await).await;
    assert_eq!(status, 404);
    assert_eq!(err["code"], "model_not_found");
}

#[tokio::test]
async fn provider_slash_model_routes_and_sends_the_bare_model() {
    let t = spawn_app().await;
    let mut req = user_msg("hi");
    req["model"] = json!("openai/gpt-4o");
    let resp = t.chat(req).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["model"], "gpt-4o-2024-07-18");
    assert_eq!(t.mock.state.last_request().unwrap()["model"], "gpt-4o");
    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert_eq!(row.model.as_deref(), Some("openai/gpt-4o"));
    assert_eq!(row.provider.as_deref(), Some("openai"));
    assert_eq!(row.upstream_model.as_deref(), Some("gpt-4o-2024-07-18"));
    assert_eq!(row.status, 200);
}

#[tokio::test]
async fn upstream_429_stays_429_with_message_and_retry_after() {
    let t = spawn_app().await;
    let (status, headers, err) = error_of(t.chat(user_msg("[[mock:error=429]]")).await).await;
    assert_eq!(status, 429);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("Rate limit reached for requests per min"),
        "{err}"
    );
    assert_eq!(err["type"], "requests");
    assert_eq!(err["code"], "rate_limit_exceeded");
    assert_eq!(headers["retry-after"], "1");
    let row = one_error_row(&t, 429).await;
    assert_eq!(row.provider.as_deref(), Some("openai"));
}

#[tokio::test]
async fn upstream_4xx_and_5xx_pass_their_status_and_message() {
    let t = spawn_app().await;
    for (code, fragment) in [
        (400, "Invalid value for 'messages'"),
        (500, "The server had an error"),
        (503, "currently overloaded"),
    ] {
        let resp = t.chat(user_msg(&format!("[[mock:error={code}]]"))).await;
        let (status, headers, err) = error_of(resp).await;
        assert_eq!(status, code);
        assert!(err["message"].as_str().unwrap().contains(fragment), "{err}");
        assert!(headers.get("retry-after").is_none());
    }
    let rows = t.exact_logs(3).await;
    let statuses: Vec<u16> = rows.iter().rev().map(|r| r.row.status).collect();
    assert_eq!(statuses, vec![400, 500, 503]);
    assert!(rows.iter().all(|r| r.row.error.is_some()));
}

#[tokio::test]
async fn upstream_rejecting_the_gateway_key_is_502_and_hides_the_key() {
    let provider_key = "zq9x7w-gateway-held-provider-key-4242";
    let t = spawn_app_with(Default::default(), |c| {
        c.providers.get_mut("openai").unwrap().api_key = Some(provider_key.to_string().into());
    })
    .await;
    // Streaming or not, the same answer.
    let mut streaming = user_msg("hi");
    streaming["stream"] = json!(true);
    for req in [user_msg("hi"), streaming] {
        let resp = t.chat(req).await;
        let (status, _, err) = error_of(resp).await;
        assert_eq!(status, 502, "{err}");
        assert_eq!(err["code"], "upstream_auth_failed");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains("openai"), "{message}");
        let text = err.to_string();
        // The mock quotes the first six characters of the key it was sent, as OpenAI does.
        for secret in [provider_key, &provider_key[..6], UPSTREAM_KEY] {
            assert!(!text.contains(secret), "key leaked: {text}");
        }
    }
    // The upstream really did reject the key the gateway sent.
    assert_eq!(t.mock.state.requests().len(), 2);
    let rows = t.exact_logs(2).await;
    for r in &rows {
        assert_eq!(r.row.status, 502);
        let e = r.row.error.as_deref().unwrap();
        assert!(e.contains("upstream_auth_failed"), "{e}");
        assert!(
            !e.contains(&provider_key[..6]),
            "key leaked into the log: {e}"
        );
    }
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    let port = closed_port();
    let t = spawn_app_with(Default::default(), |c| {
        c.providers.get_mut("openai").unwrap().base_url =
            Some(format!("http://127.0.0.1:{port}/v1"));
    })
    .await;
    let (status, _, err) = error_of(t.chat(user_msg("hi")).await).await;
    assert_eq!(status, 502);
    assert_eq!(err["code"], "upstream_unreachable");
    assert!(err["message"].as_str().unwrap().contains("openai"));
    let row = one_error_row(&t, 502).await;
    assert!(row.error.unwrap().contains("upstream_unreachable"));
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let t = spawn_app_with(Default::default(), |c| {
        c.providers.get_mut("openai").unwrap().timeout = Some(Duration::from_millis(200));
    })
    .await;
    let (status, _, err) = error_of(t.chat(user_msg("[[mock:latency=2000]]")).await).await;
    assert_eq!(status, 504);
    assert_eq!(err["code"], "upstream_timeout");
    one_error_row(&t, 504).await;
}

#[tokio::test]
async fn garbage_upstream_body_is_502() {
    let t = spawn_app().await;
    let (status, _, err) = error_of(t.chat(user_msg("[[mock:garbage]]")).await).await;
    assert_eq!(status, 502);
    assert_eq!(err["code"], "upstream_bad_response");
    one_error_row(&t, 502).await;
}

#[tokio::test]
async fn unknown_v1_path_is_404_with_openai_body() {
    let t = spawn_app().await;
    let (status, _, err) = error_of(t.get("/v1/engines/davinci").await).await;
    assert_eq!(status, 404);
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("/v1/engines/davinci")
    );
    let row = one_error_row(&t, 404).await;
    assert!(row.provider.is_none());
}

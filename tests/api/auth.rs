//! Client-key authentication on `/v1`, request ids, and what is (not) logged.

use crate::helpers::*;
use chrono::{Duration as ChronoDuration, Utc};
use gophergate::store::NewKey;
use serde_json::Value;
use std::time::Duration;

async fn assert_401(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.unwrap();
    let err = openai_error(&body);
    assert_eq!(err["code"], "invalid_api_key", "{body}");
    body
}

/// Polls until a request with `key` is refused with 401 (key caches are invalidated by polling).
async fn wait_for_401(t: &TestApp, key: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let resp = t.chat_as(key, user_msg("still allowed?")).await;
        if resp.status() == 401 {
            return assert_401(resp).await;
        }
        assert_eq!(
            resp.status(),
            200,
            "unexpected status while waiting for 401"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "revoked key still accepted after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn missing_or_malformed_authorization_is_401_with_openai_body() {
    let t = spawn_app().await;
    let resp = t
        .http
        .post(t.url("/v1/chat/completions"))
        .json(&user_msg("hi"))
        .send()
        .await
        .unwrap();
    let body = assert_401(resp).await;
    assert!(body["error"]["param"].is_null());

    // A non-Bearer scheme and an empty bearer are no better than nothing.
    for value in ["Basic dXNlcjpwYXNz", "Bearer ", &t.key] {
        let resp = t
            .http
            .post(t.url("/v1/chat/completions"))
            .header("authorization", value)
            .json(&user_msg("hi"))
            .send()
            .await
            .unwrap();
        assert_401(resp).await;
    }
    // GET routes need the key too.
    let resp = t.http.get(t.url("/v1/models")).send().await.unwrap();
    assert_401(resp).await;
    assert!(t.mock.state.requests().is_empty(), "upstream was called");
}

#[tokio::test]
async fn unknown_key_is_401() {
    let t = spawn_app().await;
    let resp = t
        .chat_as(&gophergate::crypto::generate_client_key(), user_msg("hi"))
        .await;
    assert_401(resp).await;
    // The same key with one character changed.
    let mut altered = t.key.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    assert_401(t.chat_as(&altered, user_msg("hi")).await).await;
    assert!(t.mock.state.requests().is_empty());
}

#[tokio::test]
async fn key_revoked_in_process_is_refused() {
    let t = spawn_app().await;
    let key = t.create_key("temp", None).await;
    // Used once, so it sits in the key cache.
    assert_eq!(t.chat_as(&key, user_msg("hi")).await.status(), 200);
    t.app().state().store.revoke_key("temp").await.unwrap();
    let body = wait_for_401(&t, &key).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    // Other keys are unaffected.
    assert_eq!(t.chat(user_msg("hi")).await.status(), 200);
}

#[tokio::test]
async fn key_revoked_by_the_cli_while_serving_is_refused() {
    let t = spawn_app().await;
    let key = t.create_key("ci-revoke", None).await;
    assert_eq!(t.chat_as(&key, user_msg("hi")).await.status(), 200);
    // Off the runtime: a blocking wait here would freeze the in-process server (and a log-writer
    // transaction it may have open, which the CLI's write would then wait on until it times out).
    let mut cmd = crate::cli::gophergate(t.dir.path());
    cmd.args(["keys", "revoke", "ci-revoke"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "revoke failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_401(&t, &key).await;
    assert_eq!(t.chat(user_msg("hi")).await.status(), 200);
}

#[tokio::test]
async fn expired_key_is_401() {
    let t = spawn_app().await;
    let key = t
        .create_key_with(NewKey {
            name: "old".into(),
            hash: [0; 32],
            prefix: String::new(),
            models: None,
            rpm: None,
            tpm: None,
            budget_usd: None,
            expires_at: Some(Utc::now() - ChronoDuration::minutes(1)),
        })
        .await;
    let body = assert_401(t.chat_as(&key, user_msg("hi")).await).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    // A key expiring in the future works.
    let live = t
        .create_key_with(NewKey {
            name: "fresh".into(),
            hash: [0; 32],
            prefix: String::new(),
            models: None,
            rpm: None,
            tpm: None,
            budget_usd: None,
            expires_at: Some(Utc::now() + ChronoDuration::hours(1)),
        })
        .await;
    assert_eq!(t.chat_as(&live, user_msg("hi")).await.status(), 200);
}

#[tokio::test]
async fn key_restricted_to_models_gets_403_for_others() {
    let t = spawn_app().await;
    let key = t
        .create_key("narrow", Some(vec!["gpt-4o-mini".into()]))
        .await;
    assert_eq!(t.chat_as(&key, user_msg("hi")).await.status(), 200);

    let mut req = user_msg("hi");
    req["model"] = "gpt-4o".into();
    let resp = t.chat_as(&key, req).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    let err = openai_error(&body);
    assert_eq!(err["type"], "permission_error");
    assert!(err["message"].as_str().unwrap().contains("gpt-4o"));
    // Only the allowed request reached the upstream.
    assert_eq!(t.mock.state.requests().len(), 1);

    let rows = t.exact_logs(2).await;
    assert_eq!(rows[0].row.status, 403);
    assert_eq!(rows[0].row.key_name.as_deref(), Some("narrow"));
    assert_eq!(rows[0].row.model.as_deref(), Some("gpt-4o"));
    assert!(rows[0].row.error.is_some());
}

#[tokio::test]
async fn unauthenticated_requests_are_not_logged() {
    let t = spawn_app().await;
    let unknown = gophergate::crypto::generate_client_key();
    for _ in 0..3 {
        assert_eq!(
            t.http
                .post(t.url("/v1/chat/completions"))
                .json(&user_msg("hi"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
        assert_eq!(t.chat_as(&unknown, user_msg("hi")).await.status(), 401);
        assert_eq!(
            t.http
                .get(t.url("/v1/nowhere"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    }
    // One authenticated request afterwards: it is the only row.
    let resp = t.chat(user_msg("hi")).await;
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.request_id, rid);
    assert_eq!(rows[0].row.status, 200);
}

#[tokio::test]
async fn health_needs_no_auth() {
    let t = spawn_app().await;
    let resp = t.http.get(t.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn every_response_has_a_request_id_and_the_clients_is_echoed_and_logged() {
    let t = spawn_app().await;
    let responses = vec![
        t.http.get(t.url("/health")).send().await.unwrap(),
        t.http
            .post(t.url("/v1/chat/completions"))
            .send()
            .await
            .unwrap(),
        t.chat(user_msg("hi")).await,
        t.post_raw("/v1/chat/completions", "{oops").await,
        t.get("/v1/unknown").await,
        t.http.get(t.url("/not-v1")).send().await.unwrap(),
    ];
    let mut ids = Vec::new();
    for r in &responses {
        let id = r
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id on {} {}", r.status(), r.url()))
            .to_str()
            .unwrap()
            .to_string();
        assert!(!id.is_empty());
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), responses.len(), "request ids repeat");

    let mine = "client-chosen-id-42";
    let resp = t
        .http
        .post(t.url("/v1/chat/completions"))
        .bearer_auth(&t.key)
        .header("x-request-id", mine)
        .json(&user_msg("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], mine);
    // An error response echoes it too.
    let resp = t
        .http
        .post(t.url("/v1/chat/completions"))
        .bearer_auth(&t.key)
        .header("x-request-id", "client-err-7")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-request-id"], "client-err-7");

    // 3 authenticated requests above plus these 2.
    let rows = t.exact_logs(5).await;
    assert_eq!(rows[1].row.request_id, mine);
    assert_eq!(rows[1].row.status, 200);
    assert_eq!(rows[0].row.request_id, "client-err-7");
    assert_eq!(rows[0].row.status, 400);
}

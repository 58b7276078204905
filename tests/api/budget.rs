//! Per-key budgets: reserved before the call, settled to the real cost after, never overrun, even
//! by many requests at once.

use crate::helpers::*;
use futures::future::join_all;
use gophergate::{mock::MockConfig, store::NewKey};
use serde_json::{Value, json};
use std::time::Duration;

async fn budget_app(budget: f64) -> (TestApp, String) {
    let t = spawn_app_with(
        MockConfig {
            latency: Duration::from_millis(150),
            ..Default::default()
        },
        |_| {},
    )
    .await;
    t.wait_registry().await;
    let key = t
        .create_key_with(NewKey {
            name: "budgeted".into(),
            hash: [0; 32],
            prefix: String::new(),
            models: None,
            rpm: None,
            tpm: None,
            budget_usd: Some(budget),
            expires_at: None,
        })
        .await;
    (t, key)
}

fn request(max_tokens: u64) -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn concurrent_requests_cannot_overrun_the_budget() {
    // gpt-4o-mini: $0.15 in / $0.60 out per million. 1000 output tokens reserve ~ $0.0006 each,
    // so a $0.0025 budget admits four at a time, whatever the interleaving.
    let budget = 0.0025;
    let (t, key) = budget_app(budget).await;
    let sends = (0..40).map(|_| {
        let (t, key) = (&t, key.clone());
        async move {
            t.http
                .post(t.url("/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&request(1000))
                .send()
                .await
                .unwrap()
        }
    });
    let responses = join_all(sends).await;
    let mut ok = 0;
    let mut refused = 0;
    for r in responses {
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "budget_exceeded");
                refused += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!((1..=4).contains(&ok), "{ok} requests were admitted at once");
    assert_eq!(ok + refused, 40);
    let rows = t.exact_logs(40).await;
    let spent: f64 = rows
        .iter()
        .filter(|r| r.row.key_name.as_deref() == Some("budgeted"))
        .filter_map(|r| r.row.cost_usd)
        .sum();
    assert!(spent > 0.0 && spent <= budget, "spent {spent} of {budget}");
}

#[tokio::test]
async fn spending_accumulates_until_the_budget_refuses() {
    // Each answer really costs ~ $0.000006; each reservation asks ~ $0.00006 (100 tokens out).
    let budget = 0.00005;
    let (t, key) = budget_app(budget).await;
    let mut admitted = 0;
    for _ in 0..50 {
        let r = t
            .http
            .post(t.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&request(60))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            break;
        }
        assert_eq!(r.status(), 200);
        admitted += 1;
    }
    assert!((1..50).contains(&admitted), "admitted {admitted}");
    let rows = t.logs(admitted + 1).await;
    let spent: f64 = rows.iter().filter_map(|r| r.row.cost_usd).sum();
    assert!(spent <= budget, "spent {spent} of {budget}");
}

#[tokio::test]
async fn a_budgeted_key_cannot_use_an_unpriced_model() {
    let (t, key) = budget_app(1.0).await;
    let r = t
        .http
        .post(t.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-unreleased-9", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Keys without a budget may.
    assert_eq!(
        t.chat(
            json!({"model": "gpt-unreleased-9", "messages": [{"role": "user", "content": "x"}]})
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn spend_is_persisted_with_the_rows_and_survives_a_restart() {
    let budget = 0.00005;
    let (mut t, key) = budget_app(budget).await;
    let version_before = t.app().state().store.keys_version().await.unwrap();
    for _ in 0..3 {
        let r = t
            .http
            .post(t.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&request(10))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let rows = t.exact_logs(3).await;
    let logged: f64 = rows.iter().filter_map(|r| r.row.cost_usd).sum();
    let stored = t
        .app()
        .state()
        .store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "budgeted")
        .unwrap()
        .spent_usd;
    assert!(
        (stored - logged).abs() < 1e-12,
        "stored {stored} vs logged {logged}"
    );
    // Recording spend is not a key change: caches stay warm.
    assert_eq!(
        t.app().state().store.keys_version().await.unwrap(),
        version_before
    );

    // A new process starts the ledger from the stored spend.
    let dir = t.dir.path().to_path_buf();
    t.shutdown().await;
    let config = test_config(&dir, &t.mock);
    let app = gophergate::app::App::build(config).await.unwrap();
    let k = app
        .state()
        .store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "budgeted")
        .unwrap();
    assert!((k.spent_usd - logged).abs() < 1e-12);
    app.shutdown().await.unwrap();
}

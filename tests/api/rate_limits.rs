//! Per-key requests-per-minute limits: 429 with Retry-After and x-ratelimit headers, logged,
//! other keys unaffected.

use crate::helpers::*;
use gophergate::store::NewKey;
use serde_json::Value;

#[tokio::test]
async fn a_key_over_its_rpm_gets_429_with_retry_after() {
    let t = spawn_app().await;
    let limited = t
        .create_key_with(NewKey {
            name: "limited".into(),
            hash: [0; 32],
            prefix: String::new(),
            models: None,
            rpm: Some(3),
            budget_usd: None,
            expires_at: None,
        })
        .await;
    let send = |key: String| {
        let t = &t;
        async move {
            t.http
                .post(t.url("/v1/chat/completions"))
                .bearer_auth(key)
                .json(&user_msg("hi"))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..3 {
        assert_eq!(send(limited.clone()).await.status(), 200);
    }
    let resp = send(limited.clone()).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "retry-after {retry}");
    assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "3");
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    // Another key is not limited by it.
    assert_eq!(send(t.key.clone()).await.status(), 200);
    // The refused request is logged like any other.
    let rows = t.exact_logs(5).await;
    assert_eq!(rows.iter().filter(|r| r.row.status == 429).count(), 1);
    // The upstream saw only the allowed ones.
    assert_eq!(t.mock.state.requests().len(), 4);
}

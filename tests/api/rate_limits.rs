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
            tpm: None,
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

#[tokio::test]
async fn beyond_the_in_flight_cap_requests_get_a_fast_503() {
    let t = spawn_app_with(gophergate::mock::MockConfig::default(), |c| {
        c.server.max_in_flight = 2
    })
    .await;
    let slow = || {
        let t = &t;
        async move {
            t.chat(user_msg("slow [[mock:latency=600]]"))
                .await
                .status()
                .as_u16()
        }
    };
    let busy = async {
        // Once both slow requests are at the upstream, the gateway is at its cap.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while t.mock.state.requests().len() < 2 {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let started = std::time::Instant::now();
        let resp = t.chat(user_msg("one more")).await;
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "1");
        assert!(
            started.elapsed() < std::time::Duration::from_millis(300),
            "refused fast"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "overloaded");
    };
    let (a, b, ()) = tokio::join!(slow(), slow(), busy);
    assert_eq!((a, b), (200, 200));
    // Room again.
    assert_eq!(t.chat(user_msg("after")).await.status(), 200);
    let rows = t.exact_logs(4).await;
    assert_eq!(rows.iter().filter(|r| r.row.status == 503).count(), 1);
}

//! A client that goes away cancels the upstream request at once (no upstream tokens burnt for
//! nobody), and its row says so: 499 before any byte, 200 with `client_disconnected` mid-stream.
//! The mock counts handlers dropped before answering (`cancelled`) and bodies dropped before their
//! end (`abandoned`), which is what the gateway closing its upstream connection looks like.

use crate::helpers::*;
use futures::StreamExt;
use gophergate::mock::MockStats;
use serde_json::json;
use std::time::{Duration, Instant};

/// How soon the upstream must see the cancellation once the client is gone.
const PROMPT: Duration = Duration::from_millis(1500);

/// Polls the mock's counters until `done` holds; fails after `within`.
async fn wait_stats(t: &TestApp, within: Duration, done: impl Fn(&MockStats) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let s = t.mock.state.stats();
        if done(&s) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "upstream not cancelled within {within:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn long_stream() -> serde_json::Value {
    // Some 25 chunks 400 ms apart: ten seconds if nobody stopped it.
    let mut req = user_msg(
        "[[mock:stall=400]] please tell me a long story about gateways, streams, sockets, \
         clients that leave early and the upstream tokens nobody will ever read",
    );
    req["stream"] = json!(true);
    req
}

#[tokio::test]
async fn a_stream_abandoned_mid_way_is_cancelled_upstream_and_logged_as_such() {
    let t = spawn_app().await;
    let resp = t.chat(long_stream()).await;
    assert_eq!(resp.status(), 200);
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    assert_eq!(t.mock.state.stats().abandoned, 0);

    // The client leaves: its connection closes with the body.
    drop(body);
    let took = wait_stats(&t, PROMPT, |s| s.abandoned == 1).await;
    eprintln!("upstream stream dropped {took:?} after the client left");
    let s = t.mock.state.stats();
    assert_eq!((s.received, s.cancelled, s.abandoned), (1, 0, 1));

    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert_eq!(row.request_id, rid);
    assert_eq!(row.status, 200);
    assert!(row.stream);
    assert!(
        row.error
            .as_deref()
            .is_some_and(|e| e.starts_with("client_disconnected")),
        "{row:?}"
    );
    // Only part of the answer was produced: nowhere near the full stream's length.
    assert!(row.latency_ms < 5_000, "{row:?}");
}

#[tokio::test]
async fn a_client_gone_before_the_first_byte_cancels_the_upstream_call_and_gets_499() {
    let t = spawn_app().await;
    let err = t
        .http
        .post(t.url("/v1/chat/completions"))
        .bearer_auth(&t.key)
        .header("x-request-id", "left-early-1")
        .timeout(Duration::from_millis(300))
        .json(&user_msg("[[mock:latency=3000]] a slow answer"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let took = wait_stats(&t, PROMPT, |s| s.cancelled == 1).await;
    eprintln!("upstream call cancelled {took:?} after the client left");
    assert_eq!(t.mock.state.stats().abandoned, 0);

    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert_eq!(row.request_id, "left-early-1");
    assert_eq!(row.status, 499);
    assert!(
        row.error
            .as_deref()
            .is_some_and(|e| e.starts_with("client_disconnected")),
        "{row:?}"
    );
    assert!(row.latency_ms < 2_500, "{row:?}");
}

#[tokio::test]
async fn a_stream_left_before_its_first_byte_is_cancelled_too() {
    let t = spawn_app().await;
    let mut req = long_stream();
    req["messages"][0]["content"] = json!("[[mock:latency=3000]] [[mock:stall=400]] slow to start");
    let err = t
        .http
        .post(t.url("/v1/chat/completions"))
        .bearer_auth(&t.key)
        .timeout(Duration::from_millis(300))
        .json(&req)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    wait_stats(&t, PROMPT, |s| s.cancelled == 1).await;
    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.status, 499, "{:?}", rows[0].row);
}

#[tokio::test]
async fn mock_stats_are_served_for_out_of_process_use() {
    let t = spawn_app().await;
    let resp = t.chat(user_msg("hello")).await;
    assert_eq!(resp.status(), 200);
    let stats: serde_json::Value = t
        .http
        .get(format!("http://{}/__mock/stats", t.mock.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats,
        json!({"received": 1, "cancelled": 0, "abandoned": 0})
    );
}

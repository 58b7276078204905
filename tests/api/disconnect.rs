//! A client that goes away cancels the upstream request at once (no upstream tokens burnt for
//! nobody), and its row says so: 499 before any byte, 200 with `client_disconnected` mid-stream.
//! The mock counts handlers dropped before answering (`cancelled`) and bodies dropped before their
//! end (`abandoned`), which is what the gateway closing its upstream connection looks like.

use crate::helpers::*;
use futures::StreamExt;
use gophergate::mock::MockStats;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

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

/// Some 25 chunks `stall_ms` apart.
fn long_stream(stall_ms: u64) -> serde_json::Value {
    let mut req = user_msg(&format!(
        "[[mock:stall={stall_ms}]] please tell me a long story about gateways, streams, sockets, \
         clients that leave early and the upstream tokens nobody will ever read"
    ));
    req["stream"] = json!(true);
    req
}

/// Sends `body` as a chat completion over a raw socket and returns the socket once the first SSE
/// event has arrived: dropping it then is a client vanishing at once, as a killed `curl` does.
async fn start_raw_stream(t: &TestApp, id: &str, body: &serde_json::Value) -> TcpStream {
    let body = serde_json::to_vec(body).unwrap();
    let mut s = TcpStream::connect(t.app().addr()).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nX-Request-Id: {id}\r\n\r\n",
        t.key,
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !got.windows(6).any(|w| w == b"data: ") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no first event");
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s
}

#[tokio::test]
async fn a_stream_abandoned_mid_way_is_cancelled_upstream_and_logged_as_such() {
    let t = spawn_app().await;
    // Chunks 3 s apart: the gateway must notice the client's close itself, not wait for a write
    // of the next chunk to fail.
    let socket = start_raw_stream(&t, "abandoned-1", &long_stream(3000)).await;
    assert_eq!(t.mock.state.stats().abandoned, 0);

    // The client leaves, and the upstream request goes with it.
    drop(socket);
    let took = wait_stats(&t, PROMPT, |s| s.abandoned == 1).await;
    eprintln!("upstream stream dropped {took:?} after the client left");
    let s = t.mock.state.stats();
    assert_eq!((s.received, s.cancelled, s.abandoned), (1, 0, 1));

    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert_eq!(row.request_id, "abandoned-1");
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
async fn a_stream_abandoned_by_a_pooled_http_client_is_cancelled_too() {
    // reqwest closes its connection only when the next chunk (400 ms apart here) shows the body
    // was dropped; then the gateway lets go of the upstream at once.
    let t = spawn_app().await;
    let resp = t.chat(long_stream(400)).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    wait_stats(&t, PROMPT, |s| s.abandoned == 1).await;
    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.status, 200);
    assert!(
        rows[0]
            .row
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("client_disconnected")),
        "{:?}",
        rows[0].row
    );
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
    let mut req = long_stream(400);
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

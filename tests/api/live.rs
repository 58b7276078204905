//! The dashboard's WebSocket: authenticated, pushes each request's log item, metrics and events,
//! and a stalled browser skips messages instead of holding anyone up.

use crate::helpers::*;
use futures::{SinkExt, StreamExt};
use gophergate::store::UserRole;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

async fn token(t: &TestApp) -> String {
    let hash = bcrypt::hash("live-password-1", 4).unwrap();
    t.app()
        .state()
        .store
        .create_user("watcher", &hash, UserRole::Viewer)
        .await
        .unwrap();
    let resp = t
        .http
        .post(t.url("/api/auth/login"))
        .json(&json!({"username": "watcher", "password": "live-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    t: &TestApp,
    token: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{}/api/ws", t.app().addr())
        .into_client_request()
        .unwrap();
    if let Some(tok) = token {
        req.headers_mut().insert(
            "cookie",
            HeaderValue::from_str(&format!("gg_session={tok}")).unwrap(),
        );
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The next message of a type, within a deadline.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} message in time"))
            .unwrap()
            .unwrap();
        if let Message::Text(text) = msg {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == kind {
                return v["data"].clone();
            }
        }
    }
}

#[tokio::test]
async fn the_live_feed_needs_a_session() {
    let t = spawn_app().await;
    assert!(connect(&t, None).await.is_err());
    assert!(connect(&t, Some("forged.token")).await.is_err());
    // A page on another origin cannot open the feed with the user's cookie.
    let tok = token(&t).await;
    let mut req = format!("ws://{}/api/ws", t.app().addr())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "cookie",
        HeaderValue::from_str(&format!("gg_session={tok}")).unwrap(),
    );
    req.headers_mut()
        .insert("origin", HeaderValue::from_static("http://evil.example"));
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    // The dashboard's own origin can.
    let mut req = format!("ws://{}/api/ws", t.app().addr())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "cookie",
        HeaderValue::from_str(&format!("gg_session={tok}")).unwrap(),
    );
    let origin = format!("http://{}", t.app().addr());
    req.headers_mut()
        .insert("origin", HeaderValue::from_str(&origin).unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
}

#[tokio::test]
async fn each_request_arrives_as_a_log_item_and_metrics_flow() {
    let t = spawn_app().await;
    let tok = token(&t).await;
    let mut ws = connect(&t, Some(&tok)).await.unwrap();
    let metrics = next_of(&mut ws, "metrics").await;
    assert!(metrics.get("requests_per_second").is_some());

    let resp = t.chat(user_msg("watch me")).await;
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(resp.status(), 200);
    let item = next_of(&mut ws, "request_log").await;
    assert_eq!(item["request_id"], rid);
    assert_eq!(item["status"], 200);
    assert_eq!(item["model"], "gpt-4o-mini");
    assert!(item["id"].as_i64().unwrap() > 0);
    // The same item /api/logs serves.
    let logs: Value = t
        .http
        .get(t.url("/api/logs?limit=1"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(logs["items"][0], item);
    // Metrics keep coming (every two seconds).
    let m = next_of(&mut ws, "metrics").await;
    assert!(m["uptime_seconds"].as_u64().is_some());
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn a_stalled_browser_skips_and_does_not_hold_up_others() {
    let t = spawn_app().await;
    let tok = token(&t).await;
    let mut slow = connect(&t, Some(&tok)).await.unwrap();
    let mut fast = connect(&t, Some(&tok)).await.unwrap();
    next_of(&mut fast, "metrics").await;
    let hub = t.app().state().hub.clone();
    let big = "x".repeat(16 * 1024);
    // Far more than the ring holds and the socket buffers take: the slow one must fall behind.
    let total = 2500;
    let publisher = tokio::spawn(async move {
        for i in 0..total {
            hub.publish("event", &json!({"i": i, "pad": big}));
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    // The fast client reads everything up to the last one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout_at(deadline, fast.next())
            .await
            .expect("fast client starved")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = msg
            && text.contains(&format!("\"i\":{}", total - 1))
        {
            break;
        }
    }
    publisher.await.unwrap();
    // The gateway still answers meanwhile.
    assert_eq!(
        t.http.get(t.url("/health")).send().await.unwrap().status(),
        200
    );
    // The slow one, reading at last, is told what it skipped.
    let lagged = next_of(&mut slow, "lagged").await;
    assert!(lagged["skipped"].as_u64().unwrap() > 0);
    assert!(
        t.app()
            .state()
            .hub
            .stats()
            .skipped
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let _ = slow.send(Message::Close(None)).await;
}

//! Graceful stop: every row is written before `shutdown` returns, including those of requests still
//! in flight when the stop began and streams ended by the grace period.

use crate::helpers::*;
use futures::{StreamExt, future::join_all};
use gophergate::store::{self, LogQuery};
use serde_json::{Value, json};
use std::time::Duration;

/// Reopens the stopped app's database, as the next start would.
async fn reopen(t: &TestApp) -> store::DynStore {
    store::open(&t.db_url(), 1).await.unwrap()
}

#[tokio::test]
async fn graceful_stop_writes_every_queued_row() {
    let mut t = spawn_app().await;
    let statuses = join_all((0..50).map(|i| {
        let mut req = user_msg(&format!("request {i}"));
        if i % 5 == 0 {
            req["model"] = json!("no-such-model");
        }
        let t = &t;
        async move { t.chat(req).await.status().as_u16() }
    }))
    .await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 40);
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 10);
    t.shutdown().await;

    let db = reopen(&t).await;
    assert_eq!(db.count_logs().await.unwrap(), 50);
    let rows = db
        .query_logs(&LogQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.iter().filter(|r| r.row.status == 404).count(), 10);
    let mut ids: Vec<&str> = rows.iter().map(|r| r.row.request_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "duplicate rows");
}

#[tokio::test]
async fn requests_in_flight_when_the_stop_begins_finish_and_are_logged() {
    let mut t = spawn_app().await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let http = t.http.clone();
            let url = t.url("/v1/chat/completions");
            let key = t.key.clone();
            tokio::spawn(async move {
                let resp = http
                    .post(url)
                    .bearer_auth(key)
                    .json(&user_msg(&format!("[[mock:latency=300]] request {i}")))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap();
                (status, body)
            })
        })
        .collect();
    // Wait until every request has reached the upstream: all 50 are in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while t.mock.state.requests().len() < 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.shutdown().await;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "chat.completion");
    }
    let db = reopen(&t).await;
    assert_eq!(db.count_logs().await.unwrap(), 50);
}

#[tokio::test]
async fn stream_cut_by_the_grace_period_still_gets_its_row() {
    let mut t = spawn_app_with(Default::default(), |c| {
        c.server.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    let mut req = user_msg("[[mock:stall=200]] a long answer that takes a few seconds to stream");
    req["stream"] = json!(true);
    let resp = t.chat(req).await;
    assert_eq!(resp.status(), 200);
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();

    let started = std::time::Instant::now();
    let read_rest = async move {
        let mut rest = first.to_vec();
        while let Some(Ok(chunk)) = body.next().await {
            rest.extend_from_slice(&chunk);
        }
        String::from_utf8(rest).unwrap()
    };
    let ((), text) = tokio::join!(t.shutdown(), read_rest);
    // The stream (some 20 events 200 ms apart) was ended by the grace period, not run out.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        started.elapsed()
    );
    let data = sse_data(&text);
    assert!(!data.iter().any(|d| d == "[DONE]"), "{text}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "shutting_down", "{text}");

    let db = reopen(&t).await;
    let rows = db
        .query_logs(&LogQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0].row;
    assert_eq!(row.request_id, rid);
    assert_eq!(row.status, 200);
    assert!(row.stream);
    assert!(
        row.error
            .as_deref()
            .is_some_and(|e| e.contains("shutting_down")),
        "{row:?}"
    );
}

#[tokio::test]
async fn slow_request_past_the_grace_period_gets_503_and_its_row() {
    let mut t = spawn_app_with(Default::default(), |c| {
        c.server.shutdown_grace = Duration::from_millis(200);
    })
    .await;
    let http = t.http.clone();
    let url = t.url("/v1/chat/completions");
    let key = t.key.clone();
    let task = tokio::spawn(async move {
        let resp = http
            .post(url)
            .bearer_auth(key)
            .json(&user_msg("[[mock:latency=5000]] slow"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap())
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while t.mock.state.requests().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    t.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let (status, body) = task.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(openai_error(&body)["code"], "shutting_down");

    let db = reopen(&t).await;
    let rows = db
        .query_logs(&LogQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].row.status, 503);
    assert!(rows[0].row.error.is_some());
}

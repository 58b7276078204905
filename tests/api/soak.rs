//! Soak: thousands of mixed requests through the real `App` with upstream faults injected (every
//! error status, latency, cut and garbled streams, truncated JSON, stalls, connections reset
//! without an answer) and clients that leave early. Then, exactly: every request got one outcome,
//! and the log has one row per request with the status the client saw.
//!
//! Retries and fallbacks may turn a fault into another status; what must hold whatever they do is
//! that the client and the log agree, request by request.

use crate::helpers::*;
use futures::StreamExt;
use gophergate::store::LogQuery;
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

const REQUESTS: usize = 3_000;
const CONCURRENCY: usize = 32;
/// Of every `KINDS` requests, one of each kind below.
const KINDS: usize = 20;

/// The request for kind `i % KINDS`: `(body, raw body instead of JSON, client gives up early)`.
fn request(i: usize) -> (Value, Option<&'static str>, bool) {
    let stream = |text: String| {
        let mut r = user_msg(&text);
        r["stream"] = json!(true);
        r
    };
    let plain = |text: String| user_msg(&text);
    match i % KINDS {
        0..=2 => (plain(format!("hello {i}")), None, false),
        3 | 4 => (stream(format!("stream {i}")), None, false),
        5 => (plain(format!("[[mock:error=429]] {i}")), None, false),
        6 => (plain(format!("[[mock:error=500]] {i}")), None, false),
        7 => (plain(format!("[[mock:error=502]] {i}")), None, false),
        8 => (plain(format!("[[mock:error=503]] {i}")), None, false),
        9 => (stream(format!("[[mock:error=504]] {i}")), None, false),
        10 => (plain(format!("[[mock:latency=40]] {i}")), None, false),
        11 => (
            stream(format!("[[mock:cut=2]] a stream cut short {i}")),
            None,
            false,
        ),
        12 => (stream(format!("[[mock:garbage]] {i}")), None, false),
        13 => (plain(format!("[[mock:garbage]] {i}")), None, false),
        14 => (plain(format!("[[mock:truncate]] {i}")), None, false),
        15 => (
            stream(format!("[[mock:stall=5]] a stalling stream {i}")),
            None,
            false,
        ),
        16 => (plain(format!("[[mock:reset]] {i}")), None, false),
        17 => {
            let mut r = plain(format!("hello {i}"));
            r["model"] = json!("no-such-model");
            (r, None, false)
        }
        18 => (json!(null), Some("{\"model\": "), false),
        // The client gives up long before this answer: the row must say 499.
        _ => (plain(format!("[[mock:latency=3000]] {i}")), None, true),
    }
}

/// What the client saw: a status, or that it gave up (by design) before any answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Status(u16),
    GaveUp,
}

async fn one(t: &TestApp, i: usize) -> (String, Result<Seen, String>) {
    let id = format!("soak-{i}");
    let (body, raw, gives_up) = request(i);
    let mut req = t
        .http
        .post(t.url("/v1/chat/completions"))
        .bearer_auth(&t.key)
        .header("x-request-id", &id);
    req = match raw {
        Some(raw) => req.header("content-type", "application/json").body(raw),
        None => req.json(&body),
    };
    if gives_up {
        req = req.timeout(Duration::from_millis(150));
    }
    let outcome = match req.send().await {
        Err(e) if gives_up && e.is_timeout() => Ok(Seen::GaveUp),
        Err(e) => Err(format!("no answer: {e:?}")),
        Ok(resp) => {
            let status = resp.status().as_u16();
            // The whole body must arrive, however the upstream misbehaved.
            match resp.bytes().await {
                Ok(_) => Ok(Seen::Status(status)),
                Err(e) => Err(format!("status {status} but the body broke: {e:?}")),
            }
        }
    };
    (id, outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_faulty_requests_get_one_answer_and_one_matching_row_each() {
    // Circuits stay closed: with a quarter of all calls failing on purpose they would soon
    // answer everything with a fast 503, and the faults would no longer reach the relay.
    let t = spawn_app_with(Default::default(), |c| {
        c.health.failure_threshold = u32::MAX;
        c.health.min_requests = u32::MAX;
    })
    .await;
    let started = Instant::now();
    let outcomes: Vec<(String, Result<Seen, String>)> = futures::stream::iter(0..REQUESTS)
        .map(|i| one(&t, i))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let sent_in = started.elapsed();

    // Every request got exactly one outcome, and it was an answer (or the designed give-up).
    let mut seen = BTreeMap::new();
    let failures: Vec<_> = outcomes
        .iter()
        .filter_map(|(id, o)| o.as_ref().err().map(|e| format!("{id}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    for (id, o) in outcomes {
        assert!(seen.insert(id, o.unwrap()).is_none());
    }
    assert_eq!(seen.len(), REQUESTS);

    // Every request has exactly one row, written from wherever it ended.
    let store = &t.app().state().store;
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.count_logs().await.unwrap() < REQUESTS as i64 {
        assert!(
            Instant::now() < deadline,
            "rows missing: {}",
            store.count_logs().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rows = store
        .query_logs(&LogQuery {
            limit: 2 * REQUESTS as u32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), REQUESTS, "more rows than requests");
    let mut logged = BTreeMap::new();
    for r in &rows {
        assert!(
            logged
                .insert(r.row.request_id.clone(), r.row.status)
                .is_none(),
            "two rows for {}",
            r.row.request_id
        );
    }

    // Statuses agree request by request (and so as multisets); a client that gave up is a 499.
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (id, s) in &seen {
        let expected = match s {
            Seen::Status(code) => *code,
            Seen::GaveUp => 499,
        };
        assert_eq!(logged.get(id), Some(&expected), "{id}");
        *by_status.entry(expected).or_default() += 1;
    }
    let stats = t.app().state().logs.stats();
    assert_eq!(stats.lost.load(std::sync::atomic::Ordering::Relaxed), 0);
    eprintln!(
        "soak: {REQUESTS} requests at concurrency {CONCURRENCY} in {sent_in:?}; statuses {by_status:?}; \
         upstream {:?}",
        t.mock.state.stats()
    );
    // Every kind of request is in there: the faults really were injected.
    assert_eq!(by_status.get(&499), Some(&(REQUESTS / KINDS)));
    assert!(by_status.get(&200).is_some_and(|n| *n >= REQUESTS / 4));
    assert!(
        by_status.keys().filter(|s| **s >= 500).count() >= 2,
        "{by_status:?}"
    );
}

#[tokio::test]
async fn a_reset_or_truncated_upstream_answer_is_a_clean_gateway_error() {
    let t = spawn_app().await;
    for directive in ["[[mock:reset]]", "[[mock:truncate]]"] {
        let resp = t.chat(user_msg(&format!("{directive} hello"))).await;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert!((500..600).contains(&status), "{directive}: {status} {body}");
        openai_error(&body);
    }
    let rows = t.exact_logs(2).await;
    assert!(
        rows.iter()
            .all(|r| r.row.status >= 500 && r.row.error.is_some())
    );
}

#[tokio::test]
async fn the_mock_resets_and_truncates_as_documented() {
    let t = spawn_app().await;
    let url = format!("{}/chat/completions", t.mock.openai_base_url());
    let http = reqwest::Client::new();
    let send = |text: &str| {
        http.post(&url)
            .bearer_auth(UPSTREAM_KEY)
            .json(&user_msg(text))
            .send()
    };
    // Reset: not even a status line.
    let err = send("[[mock:reset]]").await.unwrap_err();
    assert!(err.status().is_none(), "{err:?}");
    // Truncate: a 200 whose JSON body breaks off mid-way.
    let resp = send("[[mock:truncate]] hello").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "the body should break off");
    // Neither is the caller abandoning anything.
    let s = t.mock.state.stats();
    assert_eq!((s.received, s.cancelled, s.abandoned), (2, 0, 0));
}

//! Streaming edge cases: upstream failures mid-stream, clients that leave, time to first byte and
//! tool-call deltas.

use crate::helpers::*;
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn stream_req(text: &str) -> Value {
    let mut req = user_msg(text);
    req["stream"] = json!(true);
    req
}

/// Splits an SSE body into chunk objects and a trailing error event, asserting no `[DONE]`.
fn chunks_then_error(text: &str) -> (Vec<Value>, Value) {
    let data = sse_data(text);
    assert!(
        !data.iter().any(|d| d == "[DONE]"),
        "a failed stream must not end with [DONE]: {text}"
    );
    let mut events: Vec<Value> = data
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("bad event {d}: {e}")))
        .collect();
    let last = events.pop().expect("no events at all");
    openai_error(&last);
    assert!(
        events.iter().all(|e| e.get("error").is_none()),
        "error before the end: {text}"
    );
    (events, last["error"].clone())
}

fn content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn upstream_cut_mid_stream_ends_with_an_error_event() {
    let t = spawn_app().await;
    let resp = t.chat(stream_req("[[mock:cut=2]] tell me more")).await;
    assert_eq!(resp.status(), 200);
    let text = read_stream(resp).await;
    let (chunks, err) = chunks_then_error(&text);
    // The role chunk and the two content chunks the upstream sent before it cut.
    assert_eq!(chunks.len(), 3, "{text}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(content(&chunks), "Hello from ");
    assert!(
        err["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("upstream_")),
        "{err}"
    );

    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert_eq!(row.status, 200);
    assert!(row.stream);
    assert!(row.error.is_some(), "{row:?}");
    assert!(row.ttft_ms.is_some());
}

#[tokio::test]
async fn garbled_event_mid_stream_ends_with_an_error_event() {
    let t = spawn_app().await;
    let resp = t.chat(stream_req("[[mock:garbage]] hi")).await;
    assert_eq!(resp.status(), 200);
    let text = read_stream(resp).await;
    let (chunks, err) = chunks_then_error(&text);
    assert_eq!(chunks.len(), 2, "{text}");
    assert_eq!(content(&chunks), "Hello ");
    assert_eq!(err["code"], "upstream_bad_response");
    assert!(!text.contains("{\"delta\"\n"), "garbage relayed: {text}");

    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.status, 200);
    assert!(
        rows[0]
            .row
            .error
            .as_deref()
            .is_some_and(|e| e.contains("upstream_bad_response")),
        "{:?}",
        rows[0].row
    );
}

#[tokio::test]
async fn client_leaving_mid_stream_is_logged_once() {
    let t = spawn_app().await;
    let resp = t
        .chat(stream_req(
            "[[mock:stall=300]] one two three four five six seven eight nine ten",
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(body);

    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert_eq!(row.status, 200);
    assert!(row.stream);
    let e = row.error.as_deref().unwrap_or_default();
    assert!(e.contains("client"), "{row:?}");
    // It ended when the client left, long before the ~4 s the whole answer takes.
    assert!(row.latency_ms < 3000, "{row:?}");
}

#[tokio::test]
async fn first_chunk_arrives_before_the_stream_is_done() {
    let t = spawn_app().await;
    let start = Instant::now();
    let resp = t.chat(stream_req("[[mock:stall=300]] go")).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let ttfb = start.elapsed();
    assert!(first.starts_with(b"data: "));
    assert!(
        ttfb < Duration::from_secs(1),
        "first chunk took {ttfb:?}: buffered?"
    );
    let mut rest = first.to_vec();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let total = start.elapsed();
    // Twelve events (role, eight words, finish, usage, [DONE]) 300 ms apart: over 3 s in all.
    assert!(
        total >= Duration::from_millis(2500),
        "stream took {total:?}"
    );
    let text = String::from_utf8(rest).unwrap();
    assert_eq!(sse_data(&text).last().unwrap(), "[DONE]");

    let rows = t.exact_logs(1).await;
    let ttft = rows[0].row.ttft_ms.unwrap();
    assert!(ttft < 1000, "ttft {ttft} ms");
    assert!(rows[0].row.latency_ms >= 2500);
    assert_eq!(rows[0].row.error, None);
}

#[tokio::test]
async fn tool_call_deltas_pass_through() {
    let t = spawn_app().await;
    let mut req = stream_req("[[mock:tools]] weather in Paris?");
    req["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let resp = t.chat(req).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert!(calls.len() >= 2, "{text}");
    assert_eq!(calls[0]["id"], "call_mock1");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, vec!["tool_calls"]);
    // The tools reached the upstream.
    assert_eq!(
        t.mock.state.last_request().unwrap()["tools"][0]["function"]["name"],
        "get_weather"
    );
    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.error, None);
    assert_eq!(rows[0].row.status, 200);
}

/// The client's stream ends at the upstream's `[DONE]`, not when the upstream gets round to
/// closing its body; the rest of that body is still read, so its connection is not abandoned.
#[tokio::test]
async fn done_is_relayed_at_once_and_the_upstream_body_is_still_read_to_its_end() {
    let t = spawn_app().await;
    let started = Instant::now();
    let mut req = stream_req("[[mock:linger=1500]] hi");
    req["stream_options"] = json!({"include_usage": true});
    let resp = t.chat(req).await;
    assert_eq!(resp.status(), 200);
    let text = read_stream(resp).await;
    let took = started.elapsed();
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    assert!(
        data.iter().any(|d| d.contains("\"usage\"")),
        "usage chunk: {text}"
    );
    assert!(
        took < Duration::from_millis(1000),
        "the stream waited for the upstream's body to end: {took:?}"
    );
    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.status, 200);
    assert_eq!(rows[0].row.error, None, "{:?}", rows[0].row);
    assert_eq!(rows[0].row.usage_source, Some("reported"));
    // After the linger the upstream body ends; it was read to the end, not dropped.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let stats = t.mock.state.stats();
    assert_eq!((stats.received, stats.abandoned), (1, 0), "{stats:?}");
}

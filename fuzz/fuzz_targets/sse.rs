//! An upstream SSE body, cut into chunks at fuzzer-chosen points, through the same parsing and
//! per-event handling the providers use: OpenAI, DeepSeek and xAI (`providers::openai`) and Gemini
//! (`providers::gemini`).
//!
//! Input: byte 0 says how many chunk sizes follow (0 to 7); the sizes are used in turn to cut the
//! rest of the input, the body. A size of 0 sends an empty chunk.
#![no_main]

use bytes::Bytes;
use futures::{Stream, StreamExt, executor::block_on, stream};
use gophergate::{
    providers::{StreamEvent, UpstreamError, gemini, openai},
    translate::{gemini::ResponseMeta, openai_dialects::Dialect},
};
use libfuzzer_sys::fuzz_target;

fn chunks(data: &[u8]) -> Vec<Bytes> {
    let Some((&n, rest)) = data.split_first() else {
        return Vec::new();
    };
    let n = usize::from(n % 8).min(rest.len());
    let (sizes, mut body) = rest.split_at(n);
    if sizes.iter().all(|&s| s == 0) {
        return vec![Bytes::copy_from_slice(body)];
    }
    let mut out = Vec::new();
    for &size in sizes.iter().cycle() {
        if body.is_empty() {
            break;
        }
        let (head, tail) = body.split_at(usize::from(size).min(body.len()));
        out.push(Bytes::copy_from_slice(head));
        body = tail;
    }
    out
}

fn body(chunks: &[Bytes]) -> impl Stream<Item = Result<Bytes, reqwest::Error>> + Unpin + use<> {
    stream::iter(chunks.to_vec().into_iter().map(Ok))
}

/// What the relay needs from every event: one line of JSON (it is framed as a single `data:`).
fn check(events: Vec<Result<StreamEvent, UpstreamError>>) {
    for ev in events.into_iter().flatten() {
        assert!(
            !ev.data.contains(&b'\n') && !ev.data.contains(&b'\r'),
            "a line break in the data would break the client's SSE framing: {:?}",
            String::from_utf8_lossy(&ev.data)
        );
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&ev.data) {
            panic!(
                "event data is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&ev.data)
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let chunks = chunks(data);
    for dialect in [Dialect::OpenAi, Dialect::DeepSeek, Dialect::Xai] {
        let events = openai::sse_chunks("fuzz".into(), dialect, body(&chunks));
        check(block_on(events.collect()));
    }
    let meta = ResponseMeta {
        id: "chatcmpl-fuzz".into(),
        created: 0,
        model: "gemini-fuzz".into(),
    };
    check(block_on(
        gemini::sse_chunks("fuzz".into(), meta, body(&chunks)).collect(),
    ));
});

//! Server-sent events from an upstream byte stream. `eventsource-stream` does the parsing; this
//! only makes its input safe: version 0.2 slices a leading UTF-8 byte-order mark at byte 1 (the
//! mark is three bytes) and panics, so the mark is dropped here first, as the SSE spec says.

use bytes::Bytes;
use eventsource_stream::{EventStream, Eventsource};
use futures::{Stream, StreamExt, future};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The SSE events of a response body, however its bytes are split into chunks.
pub fn events<S, E>(bytes: S) -> EventStream<impl Stream<Item = Result<Bytes, E>>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    skip_bom(bytes).eventsource()
}

/// Drops a leading byte-order mark, also when its three bytes arrive in different chunks.
pub fn skip_bom<S, E>(bytes: S) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    // `Some(head)` while the bytes so far could still be the start of a mark.
    bytes.scan(Some(Vec::new()), |head, item| {
        let out = match (head.take(), item) {
            (Some(mut h), Ok(b)) => {
                h.extend_from_slice(&b);
                if h.len() < BOM.len() && BOM.starts_with(&h) {
                    *head = Some(h);
                    Ok(Bytes::new())
                } else {
                    let skip = if h.starts_with(BOM) { BOM.len() } else { 0 };
                    Ok(Bytes::from(h).slice(skip..))
                }
            }
            (h, other) => {
                *head = h;
                other
            }
        };
        future::ready(Some(out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        providers::{StreamEvent, UpstreamError, gemini, openai},
        translate::{gemini::ResponseMeta, openai_dialects::Dialect},
    };
    use futures::executor::block_on;

    fn body<E>(chunks: &[&[u8]]) -> impl Stream<Item = Result<Bytes, E>> + Unpin + use<E> {
        let chunks: Vec<_> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks)
    }

    fn parse(chunks: &[&[u8]]) -> Vec<String> {
        block_on(events(body::<std::convert::Infallible>(chunks)).collect::<Vec<_>>())
            .into_iter()
            .map(|e| e.map(|e| e.data).unwrap_or_else(|e| format!("error: {e}")))
            .collect()
    }

    fn data(events: Vec<Result<StreamEvent, UpstreamError>>) -> Vec<String> {
        events
            .into_iter()
            .map(|e| String::from_utf8_lossy(&e.expect("an event").data).into_owned())
            .collect()
    }

    /// A stream starting with a BOM panicked inside eventsource-stream ("byte index 1 is not a
    /// char boundary"); the `sse` fuzz target panics on this input without the fix.
    #[test]
    fn a_leading_bom_is_dropped_however_it_is_split() {
        let body = b"\xEF\xBB\xBFdata: a\n\ndata: b\n\n";
        for i in 0..body.len() {
            for j in i..body.len() {
                let got = parse(&[&body[..i], &body[i..j], &body[j..]]);
                assert_eq!(got, ["a", "b"], "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn other_bytes_are_untouched() {
        // Not a mark: left for the UTF-8 check to reject.
        let got = parse(&[b"\xEF", b"data: x\n\n"]);
        assert!(got.len() == 1 && got[0].starts_with("error"), "{got:?}");
        assert_eq!(parse(&[b"data: \xEF\xBB\xBFx\n\n"]), ["\u{feff}x"]);
        assert_eq!(parse(&[b"\xEF\xBB"]), Vec::<String>::new());
    }

    #[test]
    fn providers_read_a_stream_with_a_bom() {
        let chunk = br#"data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}"#;
        for dialect in [Dialect::OpenAi, Dialect::DeepSeek, Dialect::Xai] {
            let s = openai::sse_chunks(
                "p".into(),
                dialect,
                body(&[b"\xEF\xBB", b"\xBF", chunk, b"\n\n"]),
            );
            assert_eq!(block_on(s.collect::<Vec<_>>()).len(), 1);
        }
        let meta = ResponseMeta {
            id: "chatcmpl-1".into(),
            created: 0,
            model: "gemini".into(),
        };
        let chunk = br#"data: {"candidates":[{"content":{"parts":[{"text":"hi"}]},"finishReason":"STOP"}]}"#;
        let s = gemini::sse_chunks(
            "p".into(),
            meta,
            body(&[b"\xEF", b"\xBB\xBF", chunk, b"\r\n\r\n"]),
        );
        let got = data(block_on(s.collect::<Vec<_>>()));
        assert_eq!(got.len(), 2, "{got:?}");
    }

    /// An event sent as several `data:` lines kept its line breaks, and the relay's single `data:`
    /// line then split it for the client (the `sse` fuzz target now checks every event for this).
    #[test]
    fn a_multi_line_event_is_relayed_as_one_line() {
        let sent = b"data: {\"choices\":[],\ndata: \"usage\":{\"prompt_tokens\":1}}\r\n\r\n";
        for dialect in [Dialect::OpenAi, Dialect::DeepSeek, Dialect::Xai] {
            let s = openai::sse_chunks("p".into(), dialect, body(&[sent]));
            let got = data(block_on(s.collect::<Vec<_>>()));
            assert_eq!(got.len(), 1, "{got:?}");
            assert!(!got[0].contains(['\n', '\r']), "{got:?}");
            let v: serde_json::Value = serde_json::from_str(&got[0]).expect("JSON");
            assert_eq!(v["usage"]["prompt_tokens"], 1);
        }
    }
}

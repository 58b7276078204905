//! Server-sent events from an upstream byte stream. `sse-stream` does the parsing (the WHATWG
//! algorithm, in time linear in the bytes however they are chunked, a leading byte-order mark
//! dropped); this gives each event's data and hands back the transport's own error, so a timeout
//! stays a timeout.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sse_stream::SseByteStream;

/// Why the events of a body stopped.
#[derive(Debug, thiserror::Error)]
pub enum EventError<E> {
    /// Reading the body failed.
    #[error("transport error: {0}")]
    Transport(E),
    /// The bytes are not a valid event stream (a field value that is not UTF-8).
    #[error("{0}")]
    Invalid(String),
}

/// The data of each SSE event of a response body (its `data:` lines joined by `\n`; empty for an
/// event without data), however its bytes are split into chunks. A decoding error ends it.
pub fn events<S, E>(bytes: S) -> impl Stream<Item = Result<String, EventError<E>>>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    SseByteStream::new(bytes).map(|event| match event {
        Ok(event) => Ok(event.data.unwrap_or_default()),
        Err(sse_stream::Error::Body(e)) => Err(match e.downcast::<E>() {
            Ok(e) => EventError::Transport(*e),
            Err(e) => EventError::Invalid(e.to_string()),
        }),
        Err(e) => Err(EventError::Invalid(e.to_string())),
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
        block_on(events(body::<std::io::Error>(chunks)).collect::<Vec<_>>())
            .into_iter()
            .map(|e| e.unwrap_or_else(|e| format!("error: {e}")))
            .collect()
    }

    fn data(events: Vec<Result<StreamEvent, UpstreamError>>) -> Vec<String> {
        events
            .into_iter()
            .map(|e| String::from_utf8_lossy(&e.expect("an event").data).into_owned())
            .collect()
    }

    /// A stream starting with a BOM made the SSE parser used before (eventsource-stream 0.2) panic
    /// ("byte index 1 is not a char boundary"), as the `sse` fuzz target found.
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
        // Not a mark: the line's field is `\xEFdata`, which SSE ignores, so no event has data.
        assert_eq!(parse(&[b"\xEF", b"data: x\n\n"]), Vec::<String>::new());
        assert_eq!(parse(&[b"data: \xEF\xBB\xBFx\n\n"]), ["\u{feff}x"]);
        assert_eq!(parse(&[b"\xEF\xBB"]), Vec::<String>::new());
    }

    #[test]
    fn data_that_is_not_utf8_ends_the_events_with_an_error() {
        let got = parse(&[b"data: a\n\ndata: \xFF\n\ndata: b\n\n"]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], "a");
        assert!(got[1].contains("utf8"), "{got:?}");
    }

    /// The body's own error comes back as itself (a timeout must stay a timeout), and ends the
    /// events.
    #[test]
    fn a_transport_error_is_handed_back_unchanged() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"data: a\n\n")),
            Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow")),
            Ok(Bytes::from_static(b"data: b\n\n")),
        ];
        let got = block_on(events(futures::stream::iter(chunks)).collect::<Vec<_>>());
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_deref().ok(), Some("a"));
        match &got[1] {
            Err(EventError::Transport(e)) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut),
            other => panic!("expected the transport error, got {other:?}"),
        }
    }

    /// Many events in one chunk, as a fast upstream or a proxy's buffering delivers them.
    #[test]
    fn a_burst_of_events_in_one_chunk_comes_out_in_order() {
        let burst: String = (0..500).map(|i| format!("data: {i}\n\n")).collect();
        let got = parse(&[burst.as_bytes()]);
        let want: Vec<String> = (0..500).map(|i| i.to_string()).collect();
        assert_eq!(got, want);
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

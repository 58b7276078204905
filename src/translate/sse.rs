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
    use futures::executor::block_on;

    fn parse(chunks: &[&[u8]]) -> Vec<String> {
        let s = futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, std::convert::Infallible>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        block_on(events(s).collect::<Vec<_>>())
            .into_iter()
            .map(|e| e.map(|e| e.data).unwrap_or_else(|e| format!("error: {e}")))
            .collect()
    }

    /// Found by `cargo fuzz run sse`: a stream starting with a BOM panicked inside
    /// eventsource-stream ("byte index 1 is not a char boundary").
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
}

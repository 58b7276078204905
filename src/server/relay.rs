//! The SSE body of a streamed chat completion. Chunks go to the client as they arrive from the
//! upstream (no buffering); the usage chunk is passed on only when the client asked for it; the
//! log row is written when the stream ends, fails, or is dropped because the client left.

use super::request_log::RequestLog;
use crate::{
    config::ProviderKind,
    error::ErrorBody,
    providers::{ChunkStream, UpstreamError},
};
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};
use tokio_util::sync::WaitForCancellationFutureOwned;

enum Phase {
    Streaming,
    Finished,
}

/// What is needed to estimate usage if the upstream never reports it.
pub struct EstimateInput {
    pub kind: ProviderKind,
    pub model: String,
    pub request_body: Bytes,
}

pub struct Relay {
    inner: ChunkStream,
    log: RequestLog,
    estimate: EstimateInput,
    /// Generated text so far, counted only if the stream ends without usage.
    completion: String,
    include_usage: bool,
    saw_finish: bool,
    saw_usage: bool,
    first_chunk: bool,
    phase: Phase,
    hard_stop: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Relay {
    pub fn new(
        inner: ChunkStream,
        log: RequestLog,
        estimate: EstimateInput,
        include_usage: bool,
        hard_stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        Self {
            inner,
            log,
            estimate,
            completion: String::new(),
            include_usage,
            saw_finish: false,
            saw_usage: false,
            first_chunk: true,
            phase: Phase::Streaming,
            hard_stop: Box::pin(hard_stop.cancelled_owned()),
        }
    }

    /// Writes the row; a stream that never got usage is estimated and priced as such.
    fn finish(&mut self, error: Option<String>) {
        self.phase = Phase::Finished;
        if !self.saw_usage {
            let e = &self.estimate;
            let counts =
                crate::estimate::estimate(e.kind, &e.model, &e.request_body, &self.completion);
            self.log.set_usage(Some(counts), "estimated");
        }
        self.log.finish_now(200, error);
    }

    fn end_with_error(&mut self, code: &str, message: &str, log_error: String) -> Bytes {
        self.finish(Some(log_error));
        error_event(code, message)
    }
}

pub fn frame(data: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + 8);
    buf.put_slice(b"data: ");
    buf.put_slice(data);
    buf.put_slice(b"\n\n");
    buf.freeze()
}

const DONE: &[u8] = b"data: [DONE]\n\n";

fn error_event(code: &str, message: &str) -> Bytes {
    let body = ErrorBody {
        error: crate::error::ErrorObject {
            message,
            kind: "server_error",
            param: None,
            code: Some(code),
        },
    };
    frame(&serde_json::to_vec(&body).unwrap_or_default())
}

impl Stream for Relay {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if matches!(this.phase, Phase::Finished) {
            return Poll::Ready(None);
        }
        if this.hard_stop.as_mut().poll(cx).is_ready() {
            let msg = "The gateway is shutting down; the stream was ended early.";
            let ev = this.end_with_error("shutting_down", msg, format!("shutting_down: {msg}"));
            return Poll::Ready(Some(Ok(ev)));
        }
        loop {
            match this.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(ev))) => {
                    if this.first_chunk {
                        this.first_chunk = false;
                        let ttft = this.log.elapsed_ms();
                        this.log.row().ttft_ms = Some(ttft);
                    }
                    if let Some(model) = ev.model
                        && this.log.row().upstream_model.as_deref() != Some(model.as_str())
                    {
                        this.log.row().upstream_model = Some(model);
                    }
                    if ev.usage.is_some() {
                        this.saw_usage = true;
                        this.log.set_usage(ev.usage, "reported");
                    }
                    this.saw_finish |= ev.finished;
                    if !this.saw_usage {
                        this.completion.push_str(&ev.text);
                    }
                    if ev.usage_only && !this.include_usage {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(frame(&ev.data))));
                }
                Poll::Ready(Some(Err(e))) => {
                    let ev = upstream_failure(this, &e);
                    return Poll::Ready(Some(Ok(ev)));
                }
                Poll::Ready(None) => {
                    if !this.saw_finish && !this.saw_usage {
                        let e = UpstreamError::BadResponse {
                            provider: this.log.row().provider.clone().unwrap_or_default(),
                            detail: "the stream ended before the answer was complete".into(),
                        };
                        let ev = upstream_failure(this, &e);
                        return Poll::Ready(Some(Ok(ev)));
                    }
                    this.finish(None);
                    return Poll::Ready(Some(Ok(Bytes::from_static(DONE))));
                }
            }
        }
    }
}

fn upstream_failure(this: &mut Relay, e: &UpstreamError) -> Bytes {
    let (_, code, _) = e.parts();
    let code = code.unwrap_or("upstream_error").to_string();
    let message = e.public_message();
    tracing::warn!(error = %e, "upstream stream failed");
    this.end_with_error(&code, &message, format!("{code}: {e}"))
}

impl Drop for Relay {
    fn drop(&mut self) {
        if matches!(self.phase, Phase::Streaming) {
            // The client went away mid-stream; the 200 was already sent.
            self.finish(Some(
                "client_disconnected: the client closed the stream early".into(),
            ));
        }
    }
}

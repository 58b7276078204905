//! The SSE body of a streamed chat completion. Chunks go to the client as they arrive from the
//! upstream (no buffering); the usage chunk is passed on only when the client asked for it; the
//! log row is written when the stream ends, fails, or is dropped because the client left (which
//! drops the upstream stream too, closing its connection: no tokens are generated for nobody).
//! A silent upstream gets SSE comment lines sent to the client every `sse_keepalive` (so proxies
//! keep the connection) and is given up after its idle timeout.

use super::request_log::RequestLog;
use crate::{
    config::ProviderKind,
    error::ErrorBody,
    providers::{ChunkStream, StreamEvent, UpstreamError},
    resilience::breaker::Ticket,
};
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};
use tokio::time::{Instant, Sleep};
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

/// A stream's silence limits: a keep-alive comment after `keepalive` (zero: never), an error after
/// `idle` without an upstream chunk.
#[derive(Debug, Clone, Copy)]
pub struct StreamTimers {
    pub keepalive: Duration,
    pub idle: Duration,
}

const KEEPALIVE: &[u8] = b": keep-alive\n\n";

pub struct Relay {
    inner: ChunkStream,
    /// The first chunk, read before the client got its headers (see `v1::first_chunk`).
    pending: Option<StreamEvent>,
    /// The target's circuit breaker hears how the stream ended.
    ticket: Option<Ticket>,
    timers: Option<StreamTimers>,
    /// When the upstream last sent something, and when the client last got a byte.
    last_upstream: Instant,
    last_sent: Instant,
    /// Armed for the next keep-alive or idle check, whichever is due first.
    timer: Option<Pin<Box<Sleep>>>,
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
        let now = Instant::now();
        Self {
            inner,
            pending: None,
            ticket: None,
            timers: None,
            last_upstream: now,
            last_sent: now,
            timer: None,
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

    pub fn with_first(mut self, first: Option<StreamEvent>) -> Self {
        self.pending = first;
        self
    }

    pub fn with_ticket(mut self, ticket: Ticket) -> Self {
        self.ticket = Some(ticket);
        self
    }

    pub fn with_timers(mut self, timers: StreamTimers) -> Self {
        self.timers = Some(timers);
        self
    }

    /// The next moment something must happen if the upstream stays silent.
    fn next_deadline(&self) -> Option<Instant> {
        let t = self.timers?;
        let idle = self.last_upstream + t.idle;
        if t.keepalive.is_zero() {
            Some(idle)
        } else {
            Some(idle.min(self.last_sent + t.keepalive))
        }
    }

    /// Called when the upstream has nothing: a keep-alive comment or an idle timeout when due.
    fn on_silence(&mut self, cx: &mut Context<'_>) -> Option<Bytes> {
        let t = self.timers?;
        loop {
            let due = self.next_deadline()?;
            let now = Instant::now();
            if now >= self.last_upstream + t.idle {
                let provider = self.log.row().provider.clone().unwrap_or_default();
                let secs = t.idle.as_secs_f64();
                let message =
                    format!("The upstream sent nothing for {secs}s; the stream was ended.");
                if let Some(ticket) = self.ticket.take() {
                    ticket.failure(&format!("{provider} stream idle for {secs}s"));
                }
                return Some(self.end_with_error(
                    "upstream_timeout",
                    &message,
                    format!("upstream_timeout: {provider} stream idle for {secs}s"),
                ));
            }
            if !t.keepalive.is_zero() && now >= self.last_sent + t.keepalive {
                self.last_sent = now;
                return Some(Bytes::from_static(KEEPALIVE));
            }
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return None;
            }
        }
    }

    /// One upstream chunk: the bytes for the client, or `None` when it is not for the client.
    fn on_chunk(&mut self, ev: StreamEvent) -> Option<Bytes> {
        if self.first_chunk {
            self.first_chunk = false;
            let ttft = self.log.elapsed_ms();
            self.log.row().ttft_ms = Some(ttft);
        }
        if let Some(model) = ev.model
            && self.log.row().upstream_model.as_deref() != Some(model.as_str())
        {
            self.log.row().upstream_model = Some(model);
        }
        if ev.usage.is_some() {
            self.saw_usage = true;
            self.log.set_usage(ev.usage, "reported");
        }
        self.saw_finish |= ev.finished;
        if !self.saw_usage {
            self.completion.push_str(&ev.text);
        }
        if ev.usage_only && !self.include_usage {
            return None;
        }
        Some(frame(&ev.data))
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
        if let Some(ev) = this.pending.take()
            && let Some(bytes) = this.on_chunk(ev)
        {
            this.last_sent = Instant::now();
            return Poll::Ready(Some(Ok(bytes)));
        }
        loop {
            match this.inner.poll_next_unpin(cx) {
                Poll::Pending => {
                    return match this.on_silence(cx) {
                        Some(bytes) => Poll::Ready(Some(Ok(bytes))),
                        None => Poll::Pending,
                    };
                }
                Poll::Ready(Some(Ok(ev))) => {
                    if this.timers.is_some() {
                        this.last_upstream = Instant::now();
                    }
                    let Some(bytes) = this.on_chunk(ev) else {
                        continue;
                    };
                    if this.timers.is_some() {
                        this.last_sent = this.last_upstream;
                    }
                    return Poll::Ready(Some(Ok(bytes)));
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
                    if let Some(ticket) = this.ticket.take() {
                        ticket.success();
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
    if let Some(ticket) = this.ticket.take() {
        ticket.failure(&e.to_string());
    }
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

//! A fake upstream that speaks OpenAI's Chat Completions wire format exactly, for tests, benchmarks
//! and demos. It answers deterministically and obeys directives written in the messages:
//!
//! - `[[mock:error=429]]` answer with that status and the provider's error body
//! - `[[mock:latency=50]]` wait 50 ms before answering
//! - `[[mock:cut=3]]` stream three content chunks, then drop the connection
//! - `[[mock:garbage]]` send a body (or stream event) that is not JSON
//! - `[[mock:tools]]` answer with a `get_weather` tool call
//! - `[[mock:stall=200]]` stream pauses 200 ms between chunks
//! - `[[mock:linger=500]]` stream keeps its body open 500 ms after the last event (`[DONE]`)
//! - `[[mock:fail=2]]` only the first 2 requests with this same text and model get the `error`
//!   status (503 when none is given); later ones succeed (a transient failure, for retries)
//! - `[[mock:retry_after=3]]` error answers carry `Retry-After: 3`
//! - `[[mock:only=gpt-a]]` every other directive applies only to requests for the model `gpt-a`
//!   (so one route target fails while another answers)
//! - `[[mock:reset]]` close the connection without sending any response (OpenAI-style dialects)
//! - `[[mock:truncate]]` non-stream: send the first half of the JSON body, then drop the
//!   connection (OpenAI-style dialects)
//!
//! What became of the answers is counted ([`MockStats`], also as JSON at `GET /__mock/stats` for a
//! mock in another process): requests received, handlers dropped before they answered (the caller
//! went away, e.g. during `[[mock:latency=…]]`), and response bodies dropped before their end (a
//! stream the caller abandoned).
//!
//! Gemini only (see [`gemini`]): `[[mock:thinking]]` (thought part, signature, thinking tokens),
//! `[[mock:blocked]]` (prompt blocked), `[[mock:maxtokens]]`, `[[mock:safety]]` (finish reasons),
//! `[[mock:cache=N]]` (N cached prompt tokens).
//!
//! DeepSeek and xAI (see [`deepseek`], [`xai`]) also honour `[[mock:cache=N]]`; DeepSeek only:
//! `[[mock:keepalive=N]]` (N keep-alive blank lines or `: keep-alive` comments before the answer).

pub mod deepseek;
pub mod gemini;
pub mod openai;
pub mod xai;

use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::Response,
    routing::get,
};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// Which provider's wire format a mock instance speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    #[default]
    OpenAi,
    Gemini,
    DeepSeek,
    Xai,
}

#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    pub dialect: Dialect,
    /// When set, requests must carry this key or get the provider's "bad key" error.
    pub api_key: Option<String>,
    /// Added before every answer (and before the first chunk of a stream).
    pub latency: Duration,
}

#[derive(Default)]
pub struct MockState {
    pub config: MockConfig,
    /// Bodies received, oldest first (bounded), so tests can check what the gateway sent.
    requests: Mutex<Vec<Value>>,
    received: AtomicU64,
    cancelled: AtomicU64,
    abandoned: AtomicU64,
    /// Requests seen per `[[mock:fail=N]]` text and model.
    failures: Mutex<std::collections::HashMap<String, u32>>,
}

/// What became of the requests a mock received (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MockStats {
    /// Requests that reached a route, whatever their fate.
    pub received: u64,
    /// Handlers dropped before they produced a response: the caller went away.
    pub cancelled: u64,
    /// Responses whose body was dropped before its end: the caller stopped reading.
    pub abandoned: u64,
}

const KEEP_REQUESTS: usize = 1000;

impl MockState {
    pub fn record(&self, body: Value) {
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() >= KEEP_REQUESTS {
            r.remove(0);
        }
        r.push(body);
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `[[mock:fail=N]]`: counts this request; true while it is among the first N.
    pub fn should_fail(&self, key: String, n: u32) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let seen = f.entry(key).or_insert(0);
        *seen += 1;
        *seen <= n
    }

    pub fn stats(&self) -> MockStats {
        MockStats {
            received: self.received.load(Ordering::SeqCst),
            cancelled: self.cancelled.load(Ordering::SeqCst),
            abandoned: self.abandoned.load(Ordering::SeqCst),
        }
    }

    pub fn last_request(&self) -> Option<Value> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .cloned()
    }
}

/// Directives found in a request's text.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Directives {
    pub error: Option<u16>,
    /// Fail only the first N identical requests.
    pub fail: Option<u32>,
    pub retry_after: Option<u64>,
    /// The directives apply to this model only.
    pub only: Option<String>,
    pub latency: Option<Duration>,
    pub cut: Option<usize>,
    pub garbage: bool,
    /// OpenAI streams: `[[mock:garbage=N]]` sends N good events before the garbage (default 2).
    pub garbage_at: Option<usize>,
    pub tools: bool,
    pub stall: Option<Duration>,
    /// Streams: the body stays open this long after the last event.
    pub linger: Option<Duration>,
    /// Answer with a thought summary, a thought signature and thinking tokens.
    pub thinking: bool,
    /// The prompt is blocked: no candidates, only `promptFeedback.blockReason`.
    pub blocked: bool,
    /// Finish because the output token limit was reached.
    pub maxtokens: bool,
    /// Finish because the output was filtered for safety (no content).
    pub safety: bool,
    /// Report this many prompt tokens as served from cache.
    pub cache: Option<u64>,
    /// DeepSeek: send this many keep-alives before the answer.
    pub keepalive: Option<usize>,
    /// OpenAI: report this many reasoning tokens (inside `completion_tokens`, as o-series do).
    pub reasoning: Option<u64>,
    /// Close the connection without any response.
    pub reset: bool,
    /// Non-stream: cut the JSON body in the middle and drop the connection.
    pub truncate: bool,
}

impl Directives {
    pub fn parse(text: &str) -> Self {
        let mut d = Directives::default();
        for piece in text.split("[[mock:").skip(1) {
            let Some(body) = piece.split("]]").next() else {
                continue;
            };
            let (k, v) = body.split_once('=').unwrap_or((body, ""));
            let ms = || v.parse::<u64>().ok().map(Duration::from_millis);
            match k {
                "error" => d.error = v.parse().ok(),
                "fail" => d.fail = v.parse().ok(),
                "retry_after" => d.retry_after = v.parse().ok(),
                "only" => d.only = Some(v.to_string()),
                "latency" => d.latency = ms(),
                "cut" => d.cut = v.parse().ok(),
                "garbage" => {
                    d.garbage = true;
                    d.garbage_at = v.parse().ok();
                }
                "tools" => d.tools = true,
                "stall" => d.stall = ms(),
                "linger" => d.linger = ms(),
                "thinking" => d.thinking = true,
                "blocked" => d.blocked = true,
                "maxtokens" => d.maxtokens = true,
                "safety" => d.safety = true,
                "cache" => d.cache = v.parse().ok(),
                "keepalive" => d.keepalive = v.parse().ok(),
                "reasoning" => d.reasoning = v.parse().ok(),
                "reset" => d.reset = true,
                "truncate" => d.truncate = true,
                _ => {}
            }
        }
        d
    }
}

/// Every text string in a JSON value, concatenated (where directives are looked for).
pub fn all_text(v: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push(' ');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(v, &mut out);
    out
}

pub struct MockServer {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    stop: CancellationToken,
}

impl MockServer {
    pub async fn start(config: MockConfig) -> std::io::Result<Self> {
        Self::start_on(
            "127.0.0.1:0"
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0))),
            config,
        )
        .await
    }

    pub async fn start_on(addr: SocketAddr, config: MockConfig) -> std::io::Result<Self> {
        let state = Arc::new(MockState {
            config,
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        // Without TCP_NODELAY, Nagle holds each stream chunk until the client's delayed ACK
        // (~40 ms on a kept-alive connection), so streams would arrive in one late burst.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let stop = CancellationToken::new();
        let app = router(state.clone());
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Ok(Self { addr, state, stop })
    }

    /// Base URL as the gateway's `OPENAI_BASE_URL` expects it.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Base URL in the form the gateway expects for this mock's dialect (API version included).
    pub fn base_url(&self) -> String {
        match self.state.config.dialect {
            Dialect::OpenAi | Dialect::Xai | Dialect::DeepSeek => {
                format!("http://{}/v1", self.addr)
            }
            Dialect::Gemini => format!("http://{}/v1beta", self.addr),
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn router(state: Arc<MockState>) -> Router {
    let dialect = match state.config.dialect {
        Dialect::OpenAi => openai::routes(),
        Dialect::Gemini => gemini::routes(),
        Dialect::DeepSeek => deepseek::routes(),
        Dialect::Xai => xai::routes(),
    };
    dialect
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .route("/__mock/stats", get(stats))
        .with_state(state)
}

async fn stats(State(state): State<Arc<MockState>>) -> Json<MockStats> {
    Json(state.stats())
}

/// Counts every request, and notices when the caller leaves before the answer is complete.
async fn observe(State(state): State<Arc<MockState>>, req: Request, next: Next) -> Response {
    state.received.fetch_add(1, Ordering::SeqCst);
    // Dropped with this future if the caller goes away before the handler answers.
    let mut waiting = Count(Some(state.clone()), |s| &s.cancelled);
    let resp = next.run(req).await;
    waiting.0 = None;
    resp.map(|body| {
        Body::new(Watched {
            inner: body,
            unfinished: Count(Some(state), |s| &s.abandoned),
        })
    })
}

/// Adds one to a counter when dropped while still armed.
struct Count(Option<Arc<MockState>>, fn(&MockState) -> &AtomicU64);

impl Drop for Count {
    fn drop(&mut self) {
        if let Some(state) = self.0.take() {
            (self.1)(&state).fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A response body that counts itself abandoned if dropped before its end.
struct Watched {
    inner: Body,
    unfinished: Count,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // Its end, or an error the mock chose to send (`cut`, `truncate`, `reset`): not abandoned.
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            this.unfinished.0 = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

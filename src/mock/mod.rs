//! A fake upstream that speaks OpenAI's Chat Completions wire format exactly, for tests, benchmarks
//! and demos. It answers deterministically and obeys directives written in the messages:
//!
//! - `[[mock:error=429]]` answer with that status and the provider's error body
//! - `[[mock:latency=50]]` wait 50 ms before answering
//! - `[[mock:cut=3]]` stream three content chunks, then drop the connection
//! - `[[mock:garbage]]` send a body (or stream event) that is not JSON
//! - `[[mock:tools]]` answer with a `get_weather` tool call
//! - `[[mock:stall=200]]` stream pauses 200 ms between chunks
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

use axum::Router;
use serde_json::Value;
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
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
    pub latency: Option<Duration>,
    pub cut: Option<usize>,
    pub garbage: bool,
    pub tools: bool,
    pub stall: Option<Duration>,
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
                "latency" => d.latency = ms(),
                "cut" => d.cut = v.parse().ok(),
                "garbage" => d.garbage = true,
                "tools" => d.tools = true,
                "stall" => d.stall = ms(),
                "thinking" => d.thinking = true,
                "blocked" => d.blocked = true,
                "maxtokens" => d.maxtokens = true,
                "safety" => d.safety = true,
                "cache" => d.cache = v.parse().ok(),
                "keepalive" => d.keepalive = v.parse().ok(),
                "reasoning" => d.reasoning = v.parse().ok(),
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
            requests: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
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
    match state.config.dialect {
        Dialect::OpenAi => openai::routes().with_state(state),
        Dialect::Gemini => gemini::routes().with_state(state),
        Dialect::DeepSeek => deepseek::routes().with_state(state),
        Dialect::Xai => xai::routes().with_state(state),
    }
}

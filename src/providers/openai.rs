//! OpenAI and every provider that speaks its Chat Completions wire format. OpenAI's answers are
//! relayed as the upstream sent them (no re-serialising); the gateway only peeks at usage, model and
//! finish. DeepSeek and xAI speak it with an accent: their requests, answers and chunks go through
//! `translate::openai_dialects`, which says what it changed, and only changed JSON is re-serialised.

use super::{
    ChunkStream, EmbeddingsAnswer, Provider, ProviderResponse, StreamEvent, UpstreamError,
    read_body, send_checked, transport_error, usage::WireUsage,
};
use crate::{
    config::{ProviderKind, ProviderSettings, Timeouts},
    domain::{ChatRequest, EmbeddingsRequest, StreamOptions},
    secret::Secret,
    server::shards::PerShard,
    translate::openai_dialects::{self as dialects, ChunkFix, Dialect},
    translate::sse::{self, EventError},
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use std::{
    pin::Pin,
    task::{Context, Poll},
};

pub struct OpenAiProvider {
    name: String,
    kind: ProviderKind,
    dialect: Dialect,
    /// Parsed once: reqwest would otherwise parse (and IDNA-map) the URL string on every request.
    chat_url: Result<reqwest::Url, String>,
    embeddings_url: Result<reqwest::Url, String>,
    api_key: Option<Secret<String>>,
    timeouts: Timeouts,
    /// A connection pool per server thread (`server::shards`).
    clients: PerShard<reqwest::Client>,
}

/// Just what the gateway reads from a response or chunk; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChoicePeek>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ChoicePeek {
    #[serde(default)]
    finish_reason: Option<String>,
    /// Stream chunks only: the text, counted if the stream ends without usage.
    #[serde(default)]
    delta: Option<DeltaPeek>,
}

#[derive(Deserialize, Default)]
struct DeltaPeek {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallPeek>,
}

#[derive(Deserialize)]
struct ToolCallPeek {
    #[serde(default)]
    function: Option<FunctionPeek>,
}

#[derive(Deserialize)]
struct FunctionPeek {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// `base_url` (checked when the configuration was loaded) joined with `path`.
fn endpoint(base_url: &str, path: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(&format!("{base_url}/{path}"))
        .map_err(|e| format!("invalid upstream URL {base_url}/{path}: {e}"))
}

impl OpenAiProvider {
    pub fn new(settings: &ProviderSettings, clients: PerShard<reqwest::Client>) -> Self {
        Self {
            name: settings.name.clone(),
            kind: settings.kind,
            dialect: Dialect::of(settings.kind),
            chat_url: endpoint(&settings.base_url, "chat/completions"),
            embeddings_url: endpoint(&settings.base_url, "embeddings"),
            api_key: settings.api_key.clone(),
            timeouts: settings.timeouts,
            clients,
        }
    }

    async fn send(&self, mut req: ChatRequest) -> Result<reqwest::Response, UpstreamError> {
        dialects::prepare_request(self.dialect, &mut req).map_err(|e| {
            UpstreamError::Unsupported {
                provider: self.name.clone(),
                param: e.param.to_string(),
                message: e.to_string(),
            }
        })?;
        let body = serde_json::to_vec(&req).map_err(|e| UpstreamError::BadResponse {
            provider: self.name.clone(),
            detail: format!("could not encode the request: {e}"),
        })?;
        self.post(&self.chat_url, body).await
    }

    async fn post(
        &self,
        url: &Result<reqwest::Url, String>,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = url.as_ref().map_err(|e| self.bad(e.clone()))?;
        let mut builder = self
            .clients
            .get()
            .post(url.clone())
            .timeout(self.timeouts.total)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        send_checked(
            &self.name,
            self.api_key.as_ref(),
            builder,
            self.timeouts.first_byte,
        )
        .await
    }

    fn bad(&self, detail: impl Into<String>) -> UpstreamError {
        UpstreamError::BadResponse {
            provider: self.name.clone(),
            detail: detail.into(),
        }
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// OpenAI and other OpenAI-compatible servers; DeepSeek and xAI have no embeddings here.
    async fn embeddings(&self, req: EmbeddingsRequest) -> Result<EmbeddingsAnswer, UpstreamError> {
        if !matches!(
            self.kind,
            ProviderKind::Openai | ProviderKind::OpenaiCompatible
        ) {
            return Err(UpstreamError::Unsupported {
                provider: self.name.clone(),
                param: "model".into(),
                message: format!("the provider '{}' offers no embeddings", self.name),
            });
        }
        let body = serde_json::to_vec(&req).map_err(|e| self.bad(e.to_string()))?;
        let resp = self.post(&self.embeddings_url, body).await?;
        let body = read_body(&self.name, resp).await?;
        #[derive(Deserialize)]
        struct EmbeddingsPeek {
            #[serde(default)]
            usage: Option<WireUsage>,
        }
        let peek: EmbeddingsPeek =
            serde_json::from_slice(&body).map_err(|e| self.bad(format!("invalid JSON: {e}")))?;
        Ok(EmbeddingsAnswer {
            usage: peek.usage.map(|u| u.normalize()),
            estimated: false,
            body,
        })
    }

    async fn chat(&self, mut req: ChatRequest) -> Result<ProviderResponse, UpstreamError> {
        req.stream = None;
        req.stream_options = None;
        let resp = self.send(req).await?;
        let body = read_body(&self.name, resp).await?;
        let invalid = |e: serde_json::Error| self.bad(format!("invalid JSON: {e}"));
        if self.dialect == Dialect::OpenAi {
            let peek: Peek = serde_json::from_slice(&body).map_err(invalid)?;
            return Ok(ProviderResponse {
                usage: peek.usage.map(|u| u.normalize()),
                model: peek.model,
                body,
            });
        }
        let mut value: Value = serde_json::from_slice(&body).map_err(invalid)?;
        let changed = dialects::fix_response(self.dialect, &mut value);
        let peek = Peek::deserialize(&value).map_err(invalid)?;
        let body = if changed {
            Bytes::from(serde_json::to_vec(&value).map_err(invalid)?)
        } else {
            // DeepSeek may send blank keep-alive lines before the JSON.
            let start = body
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(0);
            body.slice(start..)
        };
        Ok(ProviderResponse {
            usage: peek.usage.map(|u| u.normalize()),
            model: peek.model,
            body,
        })
    }

    async fn chat_stream(&self, mut req: ChatRequest) -> Result<ChunkStream, UpstreamError> {
        req.stream = Some(true);
        // Always ask for usage so streams are priced; the relay drops the usage chunk for clients
        // that did not ask for it.
        req.stream_options
            .get_or_insert_with(StreamOptions::default)
            .include_usage = Some(true);
        let resp = self.send(req).await?;
        let stream = sse_chunks_then(self.name.clone(), self.dialect, resp.bytes_stream(), drain);
        Ok(Box::pin(stream))
    }
}

/// An upstream SSE body, chunked any way, to stream events; pure, so `fuzz/` drives it directly.
/// The stream ends at the upstream's `[DONE]`; what follows it is dropped.
pub fn sse_chunks<S>(
    name: String,
    dialect: Dialect,
    bytes: S,
) -> impl Stream<Item = Result<StreamEvent, UpstreamError>>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
{
    sse_chunks_then(name, dialect, bytes, drop)
}

/// What follows an upstream's `[DONE]`: normally just the end of the body.
pub type Rest = Pin<Box<dyn Stream<Item = ()> + Send>>;

/// `sse_chunks`, handing what follows `[DONE]` to `rest` (which reads it to the end, so the
/// connection can be reused): the client gets its `[DONE]` as soon as the upstream says it, not
/// when the upstream gets round to ending the body.
pub fn sse_chunks_then<S, F>(
    name: String,
    dialect: Dialect,
    bytes: S,
    rest: F,
) -> impl Stream<Item = Result<StreamEvent, UpstreamError>>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    F: FnOnce(Rest) + Send + Unpin,
{
    let events = sse::events(bytes).map(move |ev| on_event(&name, dialect, ev));
    UntilDone {
        events: Some(Box::pin(events)),
        queued: None,
        rest: Some(rest),
    }
}

/// Parsed events (`None`: `[DONE]`) to stream items, ending at `[DONE]`.
struct UntilDone<F> {
    events: Option<Pin<Box<dyn Stream<Item = Option<Items>> + Send>>>,
    queued: Option<Items>,
    rest: Option<F>,
}

impl<F: FnOnce(Rest) + Unpin> Stream for UntilDone<F> {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.queued.as_mut().and_then(Iterator::next) {
                return Poll::Ready(Some(item));
            }
            this.queued = None;
            let Some(events) = this.events.as_mut() else {
                return Poll::Ready(None);
            };
            match std::task::ready!(events.as_mut().poll_next(cx)) {
                Some(Some(items)) => this.queued = Some(items),
                Some(None) => {
                    if let (Some(events), Some(rest)) = (this.events.take(), this.rest.take()) {
                        rest(Box::pin(events.map(|_| ())));
                    }
                    return Poll::Ready(None);
                }
                None => {
                    this.events = None;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

type Item = Result<StreamEvent, UpstreamError>;

/// How long the end of a body after `[DONE]` is waited for before its connection is dropped.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads what follows `[DONE]` to the end in the background, so the connection goes back to the
/// pool (a body dropped unread closes it).
fn drain(rest: Rest) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = tokio::time::timeout(DRAIN_LIMIT, rest.for_each(|()| async {})).await;
        });
    }
}

/// Up to two stream items without allocating (DeepSeek's last chunk becomes two).
type Items = std::iter::Chain<std::option::IntoIter<Item>, std::option::IntoIter<Item>>;

fn items(first: Option<Item>, second: Option<Item>) -> Items {
    first.into_iter().chain(second)
}

/// One SSE event from the upstream: `None` for `[DONE]`; else nothing (empty), one chunk, or (a
/// split) two.
fn on_event(
    provider: &str,
    dialect: Dialect,
    ev: Result<String, EventError<reqwest::Error>>,
) -> Option<Items> {
    let bad = |detail: String| UpstreamError::BadResponse {
        provider: provider.to_string(),
        detail,
    };
    let data = match ev {
        Ok(data) => data,
        Err(EventError::Transport(e)) => {
            return Some(items(Some(Err(transport_error(provider, e))), None));
        }
        Err(EventError::Invalid(e)) => return Some(items(Some(Err(bad(e))), None)),
    };
    match data.trim() {
        "[DONE]" => return None,
        "" => return Some(items(None, None)),
        _ => {}
    }
    // The relay sends `data` as one `data:` line. An event split over several (legal SSE) has line
    // breaks that valid JSON allows only as whitespace, so they become spaces.
    let data = if data.contains(['\n', '\r']) {
        data.replace(['\n', '\r'], " ")
    } else {
        data
    };
    let invalid = |e: serde_json::Error| bad(format!("invalid JSON in stream: {e}"));
    if dialect == Dialect::OpenAi {
        let event = serde_json::from_str::<Peek>(&data)
            .map(|peek| stream_event(peek, Bytes::from(data)))
            .map_err(invalid);
        return Some(items(Some(event), None));
    }
    let mut chunk: Value = match serde_json::from_str(&data) {
        Ok(v) => v,
        Err(e) => return Some(items(Some(Err(invalid(e))), None)),
    };
    let reencoded = |v: &Value| -> Item {
        let peek = Peek::deserialize(v).map_err(invalid)?;
        let data = serde_json::to_vec(v).map_err(invalid)?;
        Ok(stream_event(peek, Bytes::from(data)))
    };
    Some(match dialects::fix_chunk(dialect, &mut chunk) {
        ChunkFix::Unchanged => {
            let event = Peek::deserialize(&chunk)
                .map(|peek| stream_event(peek, Bytes::from(data)))
                .map_err(invalid);
            items(Some(event), None)
        }
        ChunkFix::Changed => items(Some(reencoded(&chunk)), None),
        ChunkFix::Split(usage) => items(Some(reencoded(&chunk)), Some(reencoded(&usage))),
    })
}

fn stream_event(peek: Peek, data: Bytes) -> StreamEvent {
    let mut text = String::new();
    for d in peek.choices.iter().filter_map(|c| c.delta.as_ref()) {
        for t in [&d.content, &d.reasoning_content].into_iter().flatten() {
            text.push_str(t);
        }
        for f in d.tool_calls.iter().filter_map(|t| t.function.as_ref()) {
            for t in [&f.name, &f.arguments].into_iter().flatten() {
                text.push_str(t);
            }
        }
    }
    StreamEvent {
        text,
        usage_only: peek.choices.is_empty() && peek.usage.is_some(),
        finished: peek.choices.iter().any(|c| c.finish_reason.is_some()),
        usage: peek.usage.map(|u| u.normalize()),
        model: peek.model,
        data,
    }
}

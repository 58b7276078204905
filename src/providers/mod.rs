//! Provider adapters. Each one turns a canonical `ChatRequest` into its provider's HTTP call and the
//! answer back into OpenAI-shaped JSON plus the facts the gateway needs (usage, model). Wire types
//! stay private to each provider's file.

pub mod error;
pub mod gemini;
pub mod health;
pub mod openai;
pub mod usage;

pub use error::UpstreamError;

use crate::{
    config::{ProviderKind, ProviderSettings},
    domain::{ChatRequest, EmbeddingsRequest, TokenCounts},
    secret::Secret,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use std::{pin::Pin, sync::Arc, time::Duration};

/// A finished non-streaming answer, already in OpenAI's JSON shape.
#[derive(Debug, Clone)]
pub struct ProviderResponse {
    pub body: Bytes,
    pub usage: Option<TokenCounts>,
    /// The model as the upstream reported it.
    pub model: Option<String>,
}

/// One OpenAI chat-completion chunk (JSON, without SSE framing) and what it tells the gateway.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub data: Bytes,
    pub usage: Option<TokenCounts>,
    /// The chunk carries only usage (`choices: []`): sent to the client only when it asked.
    pub usage_only: bool,
    pub model: Option<String>,
    /// A choice finished in this chunk.
    pub finished: bool,
    /// The generated text in this chunk (content, reasoning, tool calls), for estimating usage
    /// when a stream ends without it.
    pub text: String,
}

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, UpstreamError>> + Send>>;

#[async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> &str;
    fn kind(&self) -> ProviderKind;
    fn timeouts(&self) -> crate::config::Timeouts;
    /// `req.model` is already the id to send upstream.
    async fn chat(&self, req: ChatRequest) -> Result<ProviderResponse, UpstreamError>;
    /// Resolves once the upstream has accepted the request (status known); chunks follow.
    async fn chat_stream(&self, req: ChatRequest) -> Result<ChunkStream, UpstreamError>;
    /// `/v1/embeddings`; providers without an embeddings API keep this default.
    async fn embeddings(&self, req: EmbeddingsRequest) -> Result<EmbeddingsAnswer, UpstreamError> {
        Err(UpstreamError::Unsupported {
            provider: self.name().to_string(),
            param: "model".into(),
            message: format!("'{}' has no embeddings endpoint", req.model),
        })
    }
}

/// A finished embeddings answer in OpenAI's shape.
#[derive(Debug, Clone)]
pub struct EmbeddingsAnswer {
    pub body: Bytes,
    pub usage: Option<TokenCounts>,
    /// The provider reported no usage; `usage` is the gateway's estimate.
    pub estimated: bool,
}

/// A pooled HTTP client (connections are pooled per host). Each provider gets its own per server
/// thread, with its own connect timeout; registry fetches and connection tests use the default one.
pub fn http_client() -> reqwest::Client {
    http_client_with(Duration::from_secs(10))
}

pub fn http_client_with(connect_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .user_agent(concat!("gophergate/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Builds the adapter for a provider; `None` when this build has no adapter for its kind yet.
pub fn build(settings: &ProviderSettings) -> Option<Arc<dyn Provider>> {
    let connect = settings.timeouts.connect;
    let client = crate::server::shards::PerShard::new(|| http_client_with(connect));
    match settings.kind {
        ProviderKind::Openai
        | ProviderKind::OpenaiCompatible
        | ProviderKind::Deepseek
        | ProviderKind::Xai => Some(Arc::new(openai::OpenAiProvider::new(settings, client))),
        ProviderKind::Gemini => Some(Arc::new(gemini::GeminiProvider::new(settings, client))),
    }
}

/// Maps a transport failure to the client-facing error.
pub(crate) fn transport_error(provider: &str, e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout {
            provider: provider.to_string(),
        }
    } else if e.is_decode() || e.is_body() {
        UpstreamError::BadResponse {
            provider: provider.to_string(),
            detail: e.to_string(),
        }
    } else {
        UpstreamError::Unreachable {
            provider: provider.to_string(),
            // reqwest's message names the URL; strip query strings that could carry a key.
            detail: e.without_url().to_string(),
        }
    }
}

/// Largest upstream body read into memory for a non-streaming answer.
pub(crate) const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// Reads a whole (non-streaming) body with a size cap.
pub(crate) async fn read_body(
    provider: &str,
    mut resp: reqwest::Response,
) -> Result<Bytes, UpstreamError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport_error(provider, e))?
    {
        if buf.len() + chunk.len() > MAX_UPSTREAM_BODY {
            return Err(UpstreamError::BadResponse {
                provider: provider.to_string(),
                detail: "response larger than 64 MiB".into(),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Sends a prepared upstream request; a transport failure, no response headers within
/// `first_byte`, or an error status becomes an `UpstreamError` (with the provider's key scrubbed
/// from any message). The builder carries the total timeout, which also bounds the body.
pub(crate) async fn send_checked(
    provider: &str,
    api_key: Option<&Secret<String>>,
    builder: reqwest::RequestBuilder,
    first_byte: Duration,
) -> Result<reqwest::Response, UpstreamError> {
    let resp = tokio::time::timeout(first_byte, builder.send())
        .await
        .map_err(|_| UpstreamError::Timeout {
            provider: provider.to_string(),
        })?
        .map_err(|e| transport_error(provider, e))?;
    if !resp.status().is_success() {
        return Err(status_error(provider, api_key.map(|k| k.expose().as_str()), resp).await);
    }
    Ok(resp)
}

/// Turns an upstream error response into an `UpstreamError`, hiding anything that could carry the
/// gateway's key.
pub(crate) async fn status_error(
    provider: &str,
    api_key: Option<&str>,
    resp: reqwest::Response,
) -> UpstreamError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| s.ceil().max(0.0) as u64);
    let body = read_body(provider, resp).await.unwrap_or_default();
    let parsed = error::parse_error_body(&body);
    let key_rejected = status == 401
        || parsed
            .reasons
            .iter()
            .any(|r| r == "API_KEY_INVALID" || r == "API_KEY_EXPIRED")
        || parsed.code.as_deref() == Some("invalid_api_key")
        || parsed
            .message
            .as_deref()
            .is_some_and(|m| m.contains("Incorrect API key") || m.contains("API key not valid"));
    if key_rejected {
        return UpstreamError::Auth {
            provider: provider.to_string(),
        };
    }
    let mut message = parsed
        .message
        .unwrap_or_else(|| format!("upstream returned HTTP {status}"));
    if let Some(key) = api_key.filter(|k| k.len() >= 6) {
        message = message.replace(key, "***");
    }
    UpstreamError::Status {
        provider: provider.to_string(),
        status,
        message,
        detail: Box::new(error::StatusDetail {
            kind: parsed.kind,
            // Google sends the HTTP status again as a number; that is no error code.
            code: parsed.code.filter(|c| c.parse::<u16>().is_err()),
            param: parsed.param,
            retry_after: retry_after.or(parsed.retry_after),
        }),
    }
}

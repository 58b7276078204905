//! OpenAI and every provider that speaks its Chat Completions wire format. Answers are relayed as
//! the upstream sent them (no re-serialising); the gateway only peeks at usage, model and finish.

use super::{
    ChunkStream, Provider, ProviderResponse, StreamEvent, UpstreamError, read_body, status_error,
    transport_error, usage::WireUsage,
};
use crate::{
    config::{ProviderKind, ProviderSettings},
    domain::{ChatRequest, StreamOptions},
    secret::Secret,
};
use async_trait::async_trait;
use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::Deserialize;
use std::time::Duration;

pub struct OpenAiProvider {
    name: String,
    kind: ProviderKind,
    chat_url: String,
    api_key: Option<Secret<String>>,
    timeout: Duration,
    client: reqwest::Client,
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
}

impl OpenAiProvider {
    pub fn new(settings: &ProviderSettings, client: reqwest::Client) -> Self {
        Self {
            name: settings.name.clone(),
            kind: settings.kind,
            chat_url: format!("{}/chat/completions", settings.base_url),
            api_key: settings.api_key.clone(),
            timeout: settings.timeout,
            client,
        }
    }

    async fn send(&self, req: &ChatRequest) -> Result<reqwest::Response, UpstreamError> {
        let body = serde_json::to_vec(req).map_err(|e| UpstreamError::BadResponse {
            provider: self.name.clone(),
            detail: format!("could not encode the request: {e}"),
        })?;
        let mut builder = self
            .client
            .post(&self.chat_url)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        let resp = builder
            .send()
            .await
            .map_err(|e| transport_error(&self.name, e))?;
        if !resp.status().is_success() {
            return Err(status_error(
                &self.name,
                self.api_key.as_ref().map(|k| k.expose().as_str()),
                resp,
            )
            .await);
        }
        Ok(resp)
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

    async fn chat(&self, mut req: ChatRequest) -> Result<ProviderResponse, UpstreamError> {
        req.stream = None;
        req.stream_options = None;
        let resp = self.send(&req).await?;
        let body = read_body(&self.name, resp).await?;
        let peek: Peek =
            serde_json::from_slice(&body).map_err(|e| self.bad(format!("invalid JSON: {e}")))?;
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
        let resp = self.send(&req).await?;
        let name = self.name.clone();
        let events = resp.bytes_stream().eventsource();
        let stream = events.filter_map(move |ev| {
            let name = name.clone();
            async move {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(eventsource_stream::EventStreamError::Transport(e)) => {
                        return Some(Err(transport_error(&name, e)));
                    }
                    Err(e) => {
                        return Some(Err(UpstreamError::BadResponse {
                            provider: name,
                            detail: e.to_string(),
                        }));
                    }
                };
                let data = ev.data;
                if data.trim() == "[DONE]" || data.trim().is_empty() {
                    return None;
                }
                match serde_json::from_str::<Peek>(&data) {
                    Ok(peek) => Some(Ok(StreamEvent {
                        usage_only: peek.choices.is_empty() && peek.usage.is_some(),
                        finished: peek.choices.iter().any(|c| c.finish_reason.is_some()),
                        usage: peek.usage.map(|u| u.normalize()),
                        model: peek.model,
                        data: Bytes::from(data),
                    })),
                    Err(e) => Some(Err(UpstreamError::BadResponse {
                        provider: name,
                        detail: format!("invalid JSON in stream: {e}"),
                    })),
                }
            }
        });
        Ok(Box::pin(stream))
    }
}

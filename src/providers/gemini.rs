//! Google Gemini through its native API: `models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, key in `x-goog-api-key`. Translation lives in
//! `translate::gemini`; this file only does the HTTP.

use super::{
    ChunkStream, EmbeddingsAnswer, Provider, ProviderResponse, StreamEvent, UpstreamError,
    read_body, send_checked, transport_error,
};
use crate::{
    config::{ProviderKind, ProviderSettings, Timeouts},
    domain::{ChatRequest, EmbeddingsRequest},
    secret::Secret,
    server::shards::PerShard,
    translate::gemini::{self, GenerateContentResponse, ResponseMeta, StreamTranslator},
    translate::sse,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt, stream};

pub struct GeminiProvider {
    name: String,
    base_url: String,
    api_key: Option<Secret<String>>,
    timeouts: Timeouts,
    /// A connection pool per server thread (`server::shards`).
    clients: PerShard<reqwest::Client>,
}

fn meta(model: &str) -> ResponseMeta {
    ResponseMeta {
        id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        created: chrono::Utc::now().timestamp(),
        model: model.to_string(),
    }
}

impl GeminiProvider {
    pub fn new(settings: &ProviderSettings, clients: PerShard<reqwest::Client>) -> Self {
        Self {
            name: settings.name.clone(),
            base_url: settings.base_url.clone(),
            api_key: settings.api_key.clone(),
            timeouts: settings.timeouts,
            clients,
        }
    }

    async fn send(
        &self,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, UpstreamError> {
        let body = gemini::to_request(req).map_err(|e| UpstreamError::Unsupported {
            provider: self.name.clone(),
            param: e.param,
            message: e.message,
        })?;
        let model = req.model.strip_prefix("models/").unwrap_or(&req.model);
        let url = if stream {
            format!(
                "{}/models/{model}:streamGenerateContent?alt=sse",
                self.base_url
            )
        } else {
            format!("{}/models/{model}:generateContent", self.base_url)
        };
        self.post(url, &body).await
    }

    async fn post(
        &self,
        url: String,
        body: &impl serde::Serialize,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut builder = self
            .clients
            .get()
            .post(url)
            .timeout(self.timeouts.total)
            .json(body);
        if let Some(key) = &self.api_key {
            builder = builder.header("x-goog-api-key", key.expose());
        }
        send_checked(
            &self.name,
            self.api_key.as_ref(),
            builder,
            self.timeouts.first_byte,
        )
        .await
    }
}

#[async_trait]
impl Provider for GeminiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Gemini
    }

    fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    async fn embeddings(&self, req: EmbeddingsRequest) -> Result<EmbeddingsAnswer, UpstreamError> {
        let model = req
            .model
            .strip_prefix("models/")
            .unwrap_or(&req.model)
            .to_string();
        let body =
            gemini::to_embed_request(&req, &model).map_err(|e| UpstreamError::Unsupported {
                provider: self.name.clone(),
                param: e.param,
                message: e.message,
            })?;
        let url = format!("{}/models/{model}:batchEmbedContents", self.base_url);
        let resp = self.post(url, &body).await?;
        let bytes = read_body(&self.name, resp).await?;
        let parsed: gemini::BatchEmbedResponse =
            serde_json::from_slice(&bytes).map_err(|e| UpstreamError::BadResponse {
                provider: self.name.clone(),
                detail: format!("invalid JSON: {e}"),
            })?;
        // Gemini reports no usage for embeddings: estimate one token per four bytes of input.
        let bytes_in: usize = match &req.input {
            crate::domain::EmbeddingInput::One(s) => s.len(),
            crate::domain::EmbeddingInput::Many(v) => v.iter().map(String::len).sum(),
            _ => 0,
        };
        let tokens = (bytes_in as u64).div_ceil(4);
        let base64_output = req.encoding_format.as_deref() == Some("base64");
        let out = gemini::from_embed_response(&parsed, &model, base64_output, tokens);
        Ok(EmbeddingsAnswer {
            body: Bytes::from(serde_json::to_vec(&out).unwrap_or_default()),
            usage: Some(crate::domain::TokenCounts {
                prompt: tokens,
                ..Default::default()
            }),
            estimated: true,
        })
    }

    async fn chat(&self, req: ChatRequest) -> Result<ProviderResponse, UpstreamError> {
        let resp = self.send(&req, false).await?;
        let body = read_body(&self.name, resp).await?;
        let parsed: GenerateContentResponse =
            serde_json::from_slice(&body).map_err(|e| UpstreamError::BadResponse {
                provider: self.name.clone(),
                detail: format!("invalid JSON: {e}"),
            })?;
        let out = gemini::from_response(&parsed, &meta(&req.model));
        let json = serde_json::to_vec(&out).map_err(|e| UpstreamError::BadResponse {
            provider: self.name.clone(),
            detail: e.to_string(),
        })?;
        Ok(ProviderResponse {
            body: Bytes::from(json),
            usage: parsed.usage_metadata.as_ref().map(|u| u.counts()),
            model: Some(out.model),
        })
    }

    async fn chat_stream(&self, req: ChatRequest) -> Result<ChunkStream, UpstreamError> {
        let resp = self.send(&req, true).await?;
        let s = sse_chunks(self.name.clone(), meta(&req.model), resp.bytes_stream());
        Ok(Box::pin(s))
    }
}

/// A `streamGenerateContent?alt=sse` body, chunked any way, to OpenAI stream events; pure, so
/// `fuzz/` drives it directly.
pub fn sse_chunks<S>(
    name: String,
    meta: ResponseMeta,
    bytes: S,
) -> impl Stream<Item = Result<StreamEvent, UpstreamError>>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    let translator = StreamTranslator::new(meta);
    let events = sse::events(bytes);
    // State: the upstream events, the translator, chunks waiting to go out, and whether the
    // end (usage chunk, or an error) has been produced.
    stream::unfold(
        (events, translator, std::collections::VecDeque::new(), false),
        move |(mut events, mut tr, mut pending, mut done)| {
            let name = name.clone();
            async move {
                loop {
                    if let Some(item) = pending.pop_front() {
                        return Some((item, (events, tr, pending, done)));
                    }
                    if done {
                        return None;
                    }
                    match events.next().await {
                        Some(Ok(data)) => {
                            if data.trim().is_empty() {
                                continue;
                            }
                            match serde_json::from_str::<GenerateContentResponse>(&data) {
                                Ok(parsed) => {
                                    for chunk in tr.on_event(&parsed) {
                                        pending.push_back(to_event(&name, &chunk, None));
                                    }
                                }
                                Err(e) => {
                                    done = true;
                                    pending.push_back(Err(UpstreamError::BadResponse {
                                        provider: name.clone(),
                                        detail: format!("invalid JSON in stream: {e}"),
                                    }));
                                }
                            }
                        }
                        Some(Err(sse::EventError::Transport(e))) => {
                            done = true;
                            pending.push_back(Err(transport_error(&name, e)));
                        }
                        Some(Err(sse::EventError::Invalid(detail))) => {
                            done = true;
                            pending.push_back(Err(UpstreamError::BadResponse {
                                provider: name.clone(),
                                detail,
                            }));
                        }
                        None => {
                            done = true;
                            // Gemini has no [DONE]: the stream is complete only if a finish
                            // reason arrived.
                            if !tr.finished {
                                pending.push_back(Err(UpstreamError::BadResponse {
                                    provider: name.clone(),
                                    detail: "the stream ended before a finish reason".into(),
                                }));
                            } else if let Some((chunk, counts)) = tr.usage_chunk() {
                                pending.push_back(to_event(&name, &chunk, Some(counts)));
                            }
                        }
                    }
                }
            }
        },
    )
}

fn to_event(
    provider: &str,
    chunk: &crate::domain::ChatChunk,
    usage: Option<crate::domain::TokenCounts>,
) -> Result<StreamEvent, UpstreamError> {
    let data = serde_json::to_vec(chunk).map_err(|e| UpstreamError::BadResponse {
        provider: provider.to_string(),
        detail: e.to_string(),
    })?;
    let mut text = String::new();
    for d in chunk.choices.iter().map(|c| &c.delta) {
        for t in [&d.content, &d.reasoning_content].into_iter().flatten() {
            text.push_str(t);
        }
        for f in d
            .tool_calls
            .iter()
            .flatten()
            .filter_map(|t| t.function.as_ref())
        {
            for t in [&f.name, &f.arguments].into_iter().flatten() {
                text.push_str(t);
            }
        }
    }
    Ok(StreamEvent {
        text,
        data: Bytes::from(data),
        usage_only: chunk.choices.is_empty() && usage.is_some(),
        usage,
        model: Some(chunk.model.clone()),
        finished: chunk.choices.iter().any(|c| c.finish_reason.is_some()),
    })
}

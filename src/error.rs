//! `ApiError`: every way a `/v1` request can fail, and the one place each becomes an HTTP status and
//! an OpenAI-shaped body `{"error": {"message", "type", "param", "code"}}`. 5xx bodies never carry
//! internal details; 4xx bodies say what to fix.

use crate::providers::UpstreamError;
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("{0}")]
    ProviderNotConfigured(String),
    #[error("The request body is larger than the limit of {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    BudgetExceeded(#[from] crate::budget::BudgetExceeded),
    #[error(
        "Rate limit reached for this API key: {} {} per minute. Please try again in {}s.",
        .0.limit, .0.unit.as_str(), .0.retry_after.as_secs_f64().ceil()
    )]
    RateLimited(crate::ratelimit::Decision),

    #[error("The gateway is at its limit of requests in flight; retry shortly.")]
    Overloaded,
    #[error("The gateway is shutting down; retry on another instance.")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorObject<'a>,
}

#[derive(Serialize)]
pub struct ErrorObject<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub param: Option<&'a str>,
    pub code: Option<&'a str>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param,
            code: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::ModelNotFound(_) | Self::ProviderNotConfigured(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Upstream(e) => e.status(),
            Self::BudgetExceeded(_) | Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::ShuttingDown | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `(type, code, param)` of the OpenAI error object.
    fn parts(&self) -> (&str, Option<&str>, Option<&str>) {
        match self {
            Self::InvalidRequest { param, code, .. } => {
                ("invalid_request_error", *code, param.as_deref())
            }
            Self::Unauthorized(_) => ("invalid_request_error", Some("invalid_api_key"), None),
            Self::Forbidden(_) => ("permission_error", Some("model_not_allowed"), Some("model")),
            Self::ModelNotFound(_) | Self::ProviderNotConfigured(_) => (
                "invalid_request_error",
                Some("model_not_found"),
                Some("model"),
            ),
            Self::PayloadTooLarge { .. } => {
                ("invalid_request_error", Some("request_too_large"), None)
            }
            Self::Upstream(e) => e.parts(),
            Self::BudgetExceeded(_) => ("insufficient_quota", Some("budget_exceeded"), None),
            Self::RateLimited(d) => (d.unit.as_str(), Some("rate_limit_exceeded"), None),
            Self::ShuttingDown => ("server_error", Some("shutting_down"), None),
            Self::Overloaded => ("server_error", Some("overloaded"), None),
            Self::Internal(_) => ("server_error", None, None),
        }
    }

    /// The message a client may see. Internal errors are logged, never shown.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => {
                "The gateway had an internal error while processing your request.".into()
            }
            Self::Upstream(e) => e.public_message(),
            other => other.to_string(),
        }
    }

    /// A short code for the request log's `error` column (and the dashboard).
    pub fn log_message(&self) -> String {
        let (_, code, _) = self.parts();
        match code {
            Some(code) => format!("{code}: {}", self.public_message()),
            None => self.public_message(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let message = self.public_message();
        let (kind, code, param) = self.parts();
        let body = ErrorBody {
            error: ErrorObject {
                message: &message,
                kind,
                param,
                code,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if matches!(self, Self::Overloaded) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::RateLimited(d) = &self {
            let h = resp.headers_mut();
            let secs = d.retry_after.as_secs_f64().ceil() as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                h.insert(header::RETRY_AFTER, v);
            }
            d.write_headers(h);
        }
        if let Self::Upstream(e) = &self
            && let Some(secs) = e.retry_after_secs()
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

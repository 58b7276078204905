//! `UpstreamError`: how a provider call failed, and how that failure looks to the client. A provider
//! rejecting the gateway's own key is never a 401 (that would blame the client's key), and its
//! message is not echoed because providers quote part of the key back.

use axum::http::StatusCode;
use serde_json::Value;

/// The OpenAI error fields an upstream error carried, and its retry hint.
#[derive(Debug, Clone, Default)]
pub struct StatusDetail {
    pub kind: Option<String>,
    pub code: Option<String>,
    pub param: Option<String>,
    pub retry_after: Option<u64>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The provider answered with an error status and (usually) a message.
    #[error("{provider} returned {status}: {message}")]
    Status {
        provider: String,
        status: u16,
        message: String,
        /// Boxed: the rarely-used fields stay off the stack of every `Result`.
        detail: Box<StatusDetail>,
    },
    #[error("{provider} rejected the gateway's credentials")]
    Auth { provider: String },
    #[error("{provider} is unreachable: {detail}")]
    Unreachable { provider: String, detail: String },
    #[error("{provider} did not answer in time")]
    Timeout { provider: String },
    #[error("{provider} sent a response the gateway could not read: {detail}")]
    BadResponse { provider: String, detail: String },
    /// The request asks for something this provider cannot do; caught before any upstream call.
    #[error("{message}")]
    Unsupported {
        provider: String,
        param: String,
        message: String,
    },
}

impl UpstreamError {
    /// The HTTP status the upstream answered with, when it answered at all.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Status { status, .. } => StatusCode::from_u16(*status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::BAD_GATEWAY),
            Self::Auth { .. } | Self::Unreachable { .. } | Self::BadResponse { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unsupported { .. } => StatusCode::BAD_REQUEST,
        }
    }

    pub fn parts(&self) -> (&str, Option<&str>, Option<&str>) {
        match self {
            Self::Status { status, detail, .. } => {
                let default_kind = match status {
                    429 => "rate_limit_error",
                    s if *s >= 500 => "server_error",
                    _ => "invalid_request_error",
                };
                (
                    detail.kind.as_deref().unwrap_or(default_kind),
                    detail.code.as_deref(),
                    detail.param.as_deref(),
                )
            }
            Self::Auth { .. } => ("upstream_error", Some("upstream_auth_failed"), None),
            Self::Unreachable { .. } => ("upstream_error", Some("upstream_unreachable"), None),
            Self::Timeout { .. } => ("upstream_error", Some("upstream_timeout"), None),
            Self::BadResponse { .. } => ("upstream_error", Some("upstream_bad_response"), None),
            Self::Unsupported { param, .. } => (
                "invalid_request_error",
                Some("unsupported_parameter"),
                Some(param.as_str()),
            ),
        }
    }

    pub fn public_message(&self) -> String {
        match self {
            Self::Status {
                provider, message, ..
            } => format!("{message} (from provider '{provider}')"),
            Self::Auth { provider } => format!(
                "The provider '{provider}' rejected the API key GopherGate holds for it; an administrator must update that provider's key."
            ),
            Self::Unreachable { provider, .. } => {
                format!("The provider '{provider}' could not be reached.")
            }
            Self::Timeout { provider } => {
                format!("The provider '{provider}' did not answer in time.")
            }
            Self::BadResponse { provider, .. } => {
                format!("The provider '{provider}' sent a response that could not be read.")
            }
            Self::Unsupported {
                provider, message, ..
            } => format!("{message} (provider '{provider}')"),
        }
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Status { detail, .. } => detail.retry_after,
            _ => None,
        }
    }
}

/// Message, type, code and param read from any of the error bodies providers send:
/// OpenAI's `{"error": {...}}`, Google's `{"error": {"code", "message", "status"}}`, xAI's
/// `{"code": "...", "error": "..."}`, and any of those wrapped in a one-element array.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedError {
    pub message: Option<String>,
    pub kind: Option<String>,
    pub code: Option<String>,
    pub param: Option<String>,
    /// Google's `status` (e.g. `INVALID_ARGUMENT`) and `details[].reason` values.
    pub reasons: Vec<String>,
    /// Google's `RetryInfo.retryDelay` ("34.4s"), rounded up to whole seconds.
    pub retry_after: Option<u64>,
}

pub fn parse_error_body(body: &[u8]) -> ParsedError {
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body)
            .trim()
            .chars()
            .take(300)
            .collect::<String>();
        return ParsedError {
            message: (!text.is_empty()).then_some(text),
            ..Default::default()
        };
    };
    if let Value::Array(items) = &mut v
        && let Some(first) = items.first().cloned()
    {
        v = first;
    }
    let mut out = ParsedError::default();
    let as_text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match v.get("error") {
        Some(Value::Object(e)) => {
            out.message = e.get("message").and_then(as_text);
            out.kind = e.get("type").and_then(as_text);
            out.code = e.get("code").and_then(as_text);
            out.param = e.get("param").and_then(as_text);
            if let Some(status) = e.get("status").and_then(as_text) {
                out.reasons.push(status);
            }
            if let Some(Value::Array(details)) = e.get("details") {
                out.reasons.extend(
                    details
                        .iter()
                        .filter_map(|d| d.get("reason").and_then(as_text)),
                );
                out.retry_after = details
                    .iter()
                    .filter_map(|d| d.get("retryDelay").and_then(Value::as_str))
                    .filter_map(|d| d.trim_end_matches('s').parse::<f64>().ok())
                    .map(|s| s.ceil().max(0.0) as u64)
                    .next();
            }
        }
        Some(Value::String(msg)) => {
            out.message = Some(msg.clone());
            out.code = v.get("code").and_then(as_text);
        }
        _ => {
            out.message = v.get("message").and_then(as_text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_error_shape() {
        let p = parse_error_body(
            br#"{"error":{"message":"m","type":"t","param":"max_tokens","code":"c"}}"#,
        );
        assert_eq!(p.message.as_deref(), Some("m"));
        assert_eq!(p.param.as_deref(), Some("max_tokens"));
        let p = parse_error_body(br#"[{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}]"#);
        assert_eq!(p.code.as_deref(), Some("400"));
        assert_eq!(p.reasons, vec!["INVALID_ARGUMENT", "API_KEY_INVALID"]);
        let p = parse_error_body(br#"{"code":"Client specified an invalid argument","error":"Incorrect API key provided: xa***."}"#);
        assert_eq!(
            p.message.as_deref(),
            Some("Incorrect API key provided: xa***.")
        );
        let p = parse_error_body(b"<html>bad gateway</html>");
        assert_eq!(p.message.as_deref(), Some("<html>bad gateway</html>"));
    }

    #[test]
    fn statuses() {
        let e = UpstreamError::Auth {
            provider: "openai".into(),
        };
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(e.parts().1, Some("upstream_auth_failed"));
        let e = UpstreamError::Timeout {
            provider: "openai".into(),
        };
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        let e = UpstreamError::Status {
            provider: "openai".into(),
            status: 429,
            message: "slow down".into(),
            detail: Box::new(StatusDetail {
                retry_after: Some(3),
                ..Default::default()
            }),
        };
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.parts().0, "rate_limit_error");
    }
}

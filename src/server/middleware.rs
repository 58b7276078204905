//! Request ids, tracing spans and client-key authentication.

use super::SharedState;
use crate::{error::ApiError, keys::AuthError};
use axum::{
    extract::{Request, State},
    http::{HeaderValue, header::AUTHORIZATION},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::sync::Arc;
use tower_http::{
    classify::{ServerErrorsAsFailures, SharedClassifier},
    trace::{DefaultOnResponse, TraceLayer},
};

pub const REQUEST_ID: &str = "x-request-id";

/// The request's id: the client's own `x-request-id` when it is sane, else a fresh UUID.
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id: Arc<str> = match req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(id) if acceptable(id) => id.into(),
        _ => uuid::Uuid::new_v4().to_string().into(),
    };
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

type MakeSpan = fn(&Request) -> tracing::Span;

pub fn trace_layer() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, MakeSpan> {
    fn make_span(req: &Request) -> tracing::Span {
        let id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| "-".into());
        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
    }
    TraceLayer::new_for_http()
        .make_span_with(make_span as MakeSpan)
        .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG))
}

/// Checks `Authorization: Bearer <client key>` and puts the key's record in the request.
pub async fn require_client_key(
    State(state): State<SharedState>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(presented) = presented else {
        return ApiError::Unauthorized(
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer <key>'.",
        )
        .into_response();
    };
    match state.keys.authenticate(presented).await {
        Ok(key) => {
            req.extensions_mut().insert(key);
            next.run(req).await
        }
        Err(AuthError::Unknown) => {
            ApiError::Unauthorized("Incorrect API key provided.").into_response()
        }
        Err(AuthError::Revoked) => {
            ApiError::Unauthorized("This API key has been revoked.").into_response()
        }
        Err(AuthError::Expired) => {
            ApiError::Unauthorized("This API key has expired.").into_response()
        }
        Err(AuthError::Store(e)) => {
            ApiError::Internal(format!("key lookup failed: {e}")).into_response()
        }
    }
}

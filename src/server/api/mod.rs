//! The dashboard's JSON API under `/api`: sign-in (`auth`), the request log (`logs`) and usage
//! totals (`usage`).
//!
//! Every route but `POST /api/auth/login` needs a session: `Authorization: Bearer <token>` or the
//! `gg_session` cookie (see `server::session`). Every error, from any route or extractor, is one
//! JSON shape, OpenAI's `{"error": {"message", "type", "param", "code"}}`. Roles: `admin` and
//! `viewer` may both read logs and usage; `Session::require_admin` guards anything that changes
//! state.

pub mod auth;
pub mod logs;
pub mod usage;

use super::{
    SharedState,
    session::{SESSION_COOKIE, SessionError},
};
use crate::{
    error::{ErrorBody, ErrorObject},
    store::{StoreError, UserRole},
};
use axum::{
    Router,
    extract::{Query, Request, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode, header},
    middleware::{Next, from_fn_with_state},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, Utc};
use std::{borrow::Cow, collections::HashMap};

pub fn routes(state: SharedState) -> Router<SharedState> {
    let signed_in = Router::new()
        .route(
            "/auth/logout",
            post(auth::logout).fallback(method_not_allowed),
        )
        .route("/auth/me", get(auth::me).fallback(method_not_allowed))
        .route("/logs", get(logs::list).fallback(method_not_allowed))
        .route("/usage", get(usage::summary).fallback(method_not_allowed))
        .route_layer(from_fn_with_state(state, require_session));
    Router::new()
        .route(
            "/auth/login",
            post(auth::login).fallback(method_not_allowed),
        )
        .merge(signed_in)
        .fallback(not_found)
}

/// The signed-in user of a request, put there by `require_session`.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: i64,
    pub username: String,
    /// The user's role now (a token does not outlive a demotion).
    pub role: UserRole,
    pub expires_at: DateTime<Utc>,
}

impl Session {
    pub fn require_admin(&self) -> Result<(), ApiFailure> {
        match self.role {
            UserRole::Admin => Ok(()),
            UserRole::Viewer => Err(ApiFailure {
                status: StatusCode::FORBIDDEN,
                message: "This needs an admin account.".into(),
                kind: "permission_error",
                param: None,
                code: Some("admin_required"),
            }),
        }
    }
}

/// An `/api` error: status plus the OpenAI-shaped body. 5xx bodies say nothing internal.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    pub kind: &'static str,
    pub param: Option<Cow<'static, str>>,
    pub code: Option<&'static str>,
}

impl ApiFailure {
    /// No session, or one that is tampered with, expired or logged out: one answer for all.
    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: "Not signed in, or the session has ended. Sign in again.".into(),
            kind: "authentication_error",
            param: None,
            code: Some("invalid_session"),
        }
    }

    /// Unknown user or wrong password: one answer for both (no user enumeration).
    pub fn bad_credentials() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: "Incorrect username or password.".into(),
            kind: "authentication_error",
            param: None,
            code: Some("invalid_credentials"),
        }
    }

    pub fn invalid(message: impl Into<Cow<'static, str>>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(Cow::Borrowed),
            code: None,
        }
    }

    /// Logged here; the client only learns that something went wrong.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "dashboard API internal error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "The gateway had an internal error while processing your request.".into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }
}

impl From<StoreError> for ApiFailure {
    fn from(e: StoreError) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorObject {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

async fn not_found() -> ApiFailure {
    ApiFailure {
        status: StatusCode::NOT_FOUND,
        message: "No such dashboard API route.".into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("not_found"),
    }
}

async fn method_not_allowed() -> ApiFailure {
    ApiFailure {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "This method is not allowed on this route.".into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("method_not_allowed"),
    }
}

/// The session token of a request: `Authorization: Bearer …` first, else the session cookie.
pub fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        return v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|t| !t.is_empty())
}

/// Checks a token and that the user still exists with the token's session epoch.
pub async fn authenticate(state: &SharedState, token: &str) -> Result<Session, ApiFailure> {
    let claims = state
        .sessions
        .verify(token, Utc::now())
        .map_err(|e: SessionError| {
            tracing::debug!(reason = %e, "dashboard session refused");
            ApiFailure::unauthorized()
        })?;
    let user = state
        .store
        .find_user_by_id(claims.user_id)
        .await?
        .ok_or_else(ApiFailure::unauthorized)?;
    if user.session_epoch != claims.epoch {
        return Err(ApiFailure::unauthorized());
    }
    Ok(Session {
        user_id: user.id,
        username: user.username,
        role: user.role,
        expires_at: claims.expires().ok_or_else(ApiFailure::unauthorized)?,
    })
}

async fn require_session(
    State(state): State<SharedState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = presented_token(req.headers()) else {
        return ApiFailure::unauthorized().into_response();
    };
    match authenticate(&state, token).await {
        Ok(session) => {
            req.extensions_mut().insert(session);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Query parameters as given; each handler takes what it knows and refuses the rest, so a typo
/// (`?key=` for `?key_name=`) is a 400 rather than a silently ignored filter.
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn new(
        raw: Result<Query<HashMap<String, String>>, QueryRejection>,
    ) -> Result<Self, ApiFailure> {
        raw.map(|Query(q)| Self(q))
            .map_err(|_| ApiFailure::invalid("The query string is malformed.", None))
    }

    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    pub(crate) fn finish(self) -> Result<(), ApiFailure> {
        match self.0.keys().min() {
            None => Ok(()),
            Some(k) => Err(ApiFailure {
                param: Some(Cow::Owned(k.clone())),
                ..ApiFailure::invalid(format!("Unknown query parameter `{k}`."), None)
            }),
        }
    }
}

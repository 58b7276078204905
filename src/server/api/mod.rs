//! The dashboard's JSON API under `/api`: sign-in and password (`auth`), the request log (`logs`),
//! usage totals (`usage`), client keys (`keys`), providers (`providers`), models and prices
//! (`models`), users (`users`), the running system (`system`); charts and the live feed (`ws`).
//!
//! Every route but `POST /api/auth/login` needs a session: `Authorization: Bearer <token>` or the
//! `gg_session` cookie (see `server::session`). Every error, from any route or extractor, is one
//! JSON shape, OpenAI's `{"error": {"message", "type", "param", "code"}}`. Roles: `admin` and
//! `viewer` may read everything but the user list; `Session::require_admin` guards that and
//! anything that changes state. State-changing calls made with the cookie must pass the CSRF check
//! (`csrf_safe`). Sign-in failures are throttled per IP and per username (`limiter`).

pub mod auth;
pub mod charts;
pub mod keys;
pub mod limiter;
pub mod logs;
pub mod models;
pub mod providers;
pub mod system;
pub mod usage;
pub mod users;
pub mod ws;

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
    http::{HeaderMap, Method, StatusCode, header},
    middleware::{Next, from_fn_with_state},
    response::{IntoResponse, Response},
    routing::{delete, get, post, put},
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
        .route(
            "/charts/{file}",
            get(charts::svg).fallback(method_not_allowed),
        )
        .route("/ws", get(ws::connect))
        .route(
            "/circuits",
            get(providers::circuits).fallback(method_not_allowed),
        )
        .route(
            "/auth/password",
            post(auth::change_password).fallback(method_not_allowed),
        )
        .route(
            "/keys",
            get(keys::list)
                .post(keys::create)
                .fallback(method_not_allowed),
        )
        .route(
            "/keys/{name}/revoke",
            post(keys::revoke).fallback(method_not_allowed),
        )
        .route(
            "/providers",
            get(providers::list).fallback(method_not_allowed),
        )
        .route(
            "/providers/{name}/key",
            put(providers::set_key).fallback(method_not_allowed),
        )
        .route(
            "/providers/{name}/enabled",
            put(providers::set_enabled).fallback(method_not_allowed),
        )
        .route(
            "/providers/{name}/test",
            post(providers::test).fallback(method_not_allowed),
        )
        .route("/models", get(models::list).fallback(method_not_allowed))
        .route(
            "/users",
            get(users::list)
                .post(users::create)
                .fallback(method_not_allowed),
        )
        .route(
            "/users/{username}",
            delete(users::delete).fallback(method_not_allowed),
        )
        .route("/system", get(system::info).fallback(method_not_allowed))
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

    pub fn not_found(message: impl Into<Cow<'static, str>>, code: &'static str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some(code),
        }
    }

    pub fn conflict(message: impl Into<Cow<'static, str>>, code: &'static str) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some(code),
        }
    }

    /// Too many failed sign-ins (or password checks): 429 with `Retry-After` in whole seconds.
    pub fn too_many_attempts(wait: std::time::Duration) -> Response {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut resp = Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("Too many failed attempts. Try again in {secs} seconds.").into(),
            kind: "rate_limit_error",
            param: None,
            code: Some("too_many_attempts"),
        }
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        resp
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

/// Sent by the dashboard's own scripts on state-changing calls that carry no JSON body.
pub const CSRF_HEADER: &str = "x-gophergate-csrf";

/// CSRF safety for calls authenticated by the cookie: a state-changing request must be JSON or
/// carry `X-GopherGate-CSRF: 1`. Another site's form can send neither (a JSON content type or a
/// custom header needs a CORS preflight, which this server never grants), and `SameSite=Strict`
/// already keeps the cookie off cross-site requests; this is the second lock. Bearer tokens are
/// never sent by a browser on its own, so those calls need no check.
pub(crate) fn csrf_safe(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || headers.contains_key(header::AUTHORIZATION)
    {
        return true;
    }
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let json = value(header::CONTENT_TYPE.as_str()).is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    json || value(CSRF_HEADER) == Some("1")
}

impl ApiFailure {
    pub fn csrf_refused() -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: "A state-changing call without a bearer token must send \
                      `Content-Type: application/json` or the header `X-GopherGate-CSRF: 1`."
                .into(),
            kind: "permission_error",
            param: None,
            code: Some("csrf_check_failed"),
        }
    }
}

async fn require_session(
    State(state): State<SharedState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = presented_token(req.headers()) else {
        return ApiFailure::unauthorized().into_response();
    };
    if !csrf_safe(req.method(), req.headers()) {
        return ApiFailure::csrf_refused().into_response();
    }
    match authenticate(&state, token).await {
        Ok(session) => {
            req.extensions_mut().insert(session);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Parses a JSON request body. A bad one is a 400 naming the field; with `echo` false (bodies that
/// hold a password or a key) serde's own message, which can quote the value, is left out.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    shape: &'static str,
    echo: bool,
) -> Result<T, ApiFailure> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." || path.is_empty() {
            String::new()
        } else {
            format!(" (at `{path}`)")
        };
        let detail = if echo {
            format!(": {}", e.inner())
        } else {
            String::new()
        };
        ApiFailure::invalid(format!("The body must be JSON {shape}{at}{detail}."), None)
    })
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

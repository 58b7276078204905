//! `POST /api/auth/login`, `POST /api/auth/logout`, `GET /api/auth/me`.
//!
//! Login checks the bcrypt hash off the async runtime (`spawn_blocking`: a cost-12 hash takes a
//! quarter of a second of CPU). An unknown user costs the same bcrypt work as a wrong password and
//! gets the same 401, so neither the answer nor its timing tells whether a username exists.

use super::{ApiFailure, Session};
use crate::{
    secret::Secret,
    server::{
        SharedState,
        session::{SESSION_COOKIE, SESSION_TTL_SECS, SessionClaims},
    },
    store::format_time,
};
use axum::{
    Extension, Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use std::sync::LazyLock;

/// Usernames and passwords longer than this are refused unchecked (bcrypt reads 72 bytes anyway).
const MAX_FIELD_LEN: usize = 1024;

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: Secret<String>,
}

/// Verified when the user does not exist, so that case costs what a wrong password costs.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    bcrypt::hash("gophergate: no such user", crate::cli::BCRYPT_COST).unwrap_or_default()
});

pub async fn login(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiFailure> {
    // Our own message: serde's could quote part of the body, and the body holds a password.
    let body: LoginBody = serde_json::from_slice(&body).map_err(|_| {
        ApiFailure::invalid(
            "The body must be JSON: {\"username\": \"…\", \"password\": \"…\"}.",
            None,
        )
    })?;
    if body.username.len() > MAX_FIELD_LEN || body.password.expose().len() > MAX_FIELD_LEN {
        return Err(ApiFailure::bad_credentials());
    }
    let user = state.store.find_user(body.username.trim()).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let password = body.password;
    let matches = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => bcrypt::verify(password.expose(), &hash).unwrap_or_else(|e| {
            tracing::error!(error = %e, "a stored password hash is unusable");
            false
        }),
        None => {
            let _ = bcrypt::verify(password.expose(), &DUMMY_HASH);
            false
        }
    })
    .await
    .map_err(ApiFailure::internal)?;
    let Some(user) = user.filter(|_| matches) else {
        tracing::info!("dashboard sign-in refused");
        return Err(ApiFailure::bad_credentials());
    };

    let claims = SessionClaims::new(user.id, user.role, user.session_epoch, Utc::now());
    let token = state.sessions.issue(&claims);
    let expires_at = claims.expires().map(format_time);
    tracing::info!(user = %user.username, "dashboard sign-in");
    let cookie = session_cookie(&token, SESSION_TTL_SECS, is_tls(&headers));
    let mut resp = Json(json!({
        "token": token,
        "expires_at": expires_at,
        "user": {"username": user.username, "role": user.role.as_str()},
    }))
    .into_response();
    set_cookie(&mut resp, &cookie);
    Ok(resp)
}

/// Ends every session of the user (the epoch moves on) and clears this browser's cookie.
pub async fn logout(
    State(state): State<SharedState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> Result<Response, ApiFailure> {
    state.store.bump_session_epoch(session.user_id).await?;
    tracing::info!(user = %session.username, "dashboard sign-out");
    let mut resp = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut resp, &session_cookie("", 0, is_tls(&headers)));
    Ok(resp)
}

pub async fn me(Extension(session): Extension<Session>) -> Json<serde_json::Value> {
    Json(json!({
        "id": session.user_id,
        "username": session.username,
        "role": session.role.as_str(),
        "expires_at": format_time(session.expires_at),
    }))
}

/// HttpOnly (no script reads it), SameSite=Strict (no other site's request carries it), Secure
/// only when the browser reached us over TLS: GopherGate serves plain HTTP itself, so that means
/// a TLS-terminating proxy that says so in `X-Forwarded-Proto`.
fn session_cookie(token: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

fn is_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn set_cookie(resp: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    // Responses that carry a session must not be cached anywhere.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

//! `POST /api/auth/login`, `POST /api/auth/logout`, `GET /api/auth/me`, `POST /api/auth/password`.
//!
//! Login checks the bcrypt hash off the async runtime (`users::verify_password`). An unknown user
//! costs the same bcrypt work as a wrong password and gets the same 401, so neither the answer nor
//! its timing tells whether a username exists. Failed attempts are throttled per client IP and per
//! username (`limiter`): past the limit, 429 with `Retry-After`, before any bcrypt work.

use super::{ApiFailure, Session, csrf_safe, json_body};
use crate::{
    secret::Secret,
    server::{
        SharedState,
        session::{SESSION_COOKIE, SESSION_TTL_SECS, SessionClaims},
    },
    store::format_time,
    users,
};
use axum::{
    Extension, Json,
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: Secret<String>,
}

pub async fn login(
    State(state): State<SharedState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiFailure> {
    // Login CSRF (signing a victim's browser into the attacker's account) is refused like any
    // other cross-site call: a form cannot send JSON.
    if !csrf_safe(&Method::POST, &headers) {
        return Err(ApiFailure::csrf_refused());
    }
    // Our own message: serde's could quote part of the body, and the body holds a password.
    let body: LoginBody = serde_json::from_slice(&body).map_err(|_| {
        ApiFailure::invalid(
            "The body must be JSON: {\"username\": \"…\", \"password\": \"…\"}.",
            None,
        )
    })?;
    let username = body.username.trim();
    if username.len() > users::MAX_FIELD_LEN || body.password.expose().len() > users::MAX_FIELD_LEN
    {
        return Err(ApiFailure::bad_credentials());
    }
    let ip = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    if let Err(wait) = state.login_limiter.check(ip, username) {
        tracing::info!("dashboard sign-in throttled");
        return Ok(ApiFailure::too_many_attempts(wait));
    }
    let user = state.store.find_user(username).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let matches = users::verify_password(hash, body.password).await;
    let Some(user) = user.filter(|_| matches) else {
        state.login_limiter.failed(ip, username);
        tracing::info!("dashboard sign-in refused");
        return Err(ApiFailure::bad_credentials());
    };
    state.login_limiter.succeeded(username);

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

#[derive(Deserialize)]
struct PasswordBody {
    current_password: Secret<String>,
    new_password: Secret<String>,
}

/// `POST /api/auth/password`: checks the current password (a wrong one counts as a failed sign-in
/// for the throttle), sets the new one and ends every session of the user, this one included.
pub async fn change_password(
    State(state): State<SharedState>,
    Extension(session): Extension<Session>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiFailure> {
    let body: PasswordBody = json_body(
        &body,
        "{\"current_password\": \"…\", \"new_password\": \"…\"}",
        false,
    )?;
    let ip = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    if let Err(wait) = state.login_limiter.check(ip, &session.username) {
        return Ok(ApiFailure::too_many_attempts(wait));
    }
    users::check_password(body.new_password.expose())
        .map_err(|e| ApiFailure::invalid(format!("The new {e}."), Some("new_password")))?;
    let user = state
        .store
        .find_user_by_id(session.user_id)
        .await?
        .ok_or_else(ApiFailure::unauthorized)?;
    if !users::verify_password(Some(user.password_hash), body.current_password).await {
        state.login_limiter.failed(ip, &session.username);
        return Err(ApiFailure {
            code: Some("wrong_password"),
            ..ApiFailure::invalid(
                "The current password is not correct.",
                Some("current_password"),
            )
        });
    }
    let hash = users::hash_password(body.new_password)
        .await
        .map_err(ApiFailure::internal)?;
    state.store.set_password(user.id, &hash).await?;
    tracing::info!(user = %session.username, "dashboard password changed; sessions ended");
    let mut resp = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut resp, &session_cookie("", 0, is_tls(&headers)));
    Ok(resp)
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

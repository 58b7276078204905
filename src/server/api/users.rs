//! `GET /api/users`, `POST /api/users`, `DELETE /api/users/{username}`: admins only, reading
//! included (the list of who may sign in is itself worth protecting).
//!
//! Passwords follow the CLI's rules (`users::create`: at least 8 characters, bcrypt cost 12). An
//! admin cannot delete their own account (another admin must), and the last admin cannot be
//! deleted at all; a deleted user's sessions stop working at once (the user is looked up on every
//! call, and user ids are never reused).

use super::{ApiFailure, Session, json_body};
use crate::{
    secret::Secret,
    server::SharedState,
    store::{StoreError, UserRecord, UserRole, format_time},
    users::{self, UserError},
};
use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Serialize)]
pub struct UserItem {
    pub id: i64,
    pub username: String,
    pub role: &'static str,
    pub created_at: String,
}

impl From<&UserRecord> for UserItem {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            role: u.role.as_str(),
            created_at: format_time(u.created_at),
        }
    }
}

pub async fn list(
    State(state): State<SharedState>,
    Extension(session): Extension<Session>,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    session.require_admin()?;
    let items: Vec<UserItem> = state
        .store
        .list_users()
        .await?
        .iter()
        .map(UserItem::from)
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    username: String,
    password: Secret<String>,
    role: String,
}

/// 201 `{"item": {…}}`.
pub async fn create(
    State(state): State<SharedState>,
    Extension(session): Extension<Session>,
    body: Bytes,
) -> Result<Response, ApiFailure> {
    session.require_admin()?;
    let body: CreateBody = json_body(
        &body,
        "{\"username\": \"…\", \"password\": \"…\", \"role\": \"admin\" | \"viewer\"}",
        false,
    )?;
    let role = UserRole::parse(body.role.trim())
        .ok_or_else(|| ApiFailure::invalid("`role` must be admin or viewer.", Some("role")))?;
    let user = users::create(&state.store, &body.username, body.password, role)
        .await
        .map_err(|e| match e {
            UserError::EmptyUsername | UserError::BadUsername => {
                ApiFailure::invalid(format!("{}.", capitalise(&e)), Some("username"))
            }
            UserError::ShortPassword | UserError::LongPassword => {
                ApiFailure::invalid(format!("{}.", capitalise(&e)), Some("password"))
            }
            UserError::Store(StoreError::Conflict(m)) => {
                ApiFailure::conflict(format!("{}.", capitalise(&m)), "user_exists")
            }
            other => ApiFailure::internal(other),
        })?;
    tracing::info!(user = %user.username, role = user.role.as_str(), by = %session.username, "dashboard user created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "item": UserItem::from(&user) })),
    )
        .into_response())
}

/// 204. Refuses the caller's own account and the last admin (409).
pub async fn delete(
    State(state): State<SharedState>,
    Extension(session): Extension<Session>,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiFailure> {
    session.require_admin()?;
    if username == session.username {
        return Err(ApiFailure::conflict(
            "You cannot delete your own account; another admin can.",
            "cannot_delete_self",
        ));
    }
    let user = state
        .store
        .delete_user(&username)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(m) => {
                ApiFailure::not_found(format!("There is {m}."), "user_not_found")
            }
            StoreError::Conflict(m) => ApiFailure::conflict(format!("{m}."), "last_admin"),
            other => other.into(),
        })?;
    tracing::info!(user = %user.username, by = %session.username, "dashboard user deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn capitalise(text: &impl ToString) -> String {
    let text = text.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

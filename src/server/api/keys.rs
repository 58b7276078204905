//! `GET /api/keys`, `POST /api/keys` (admin), `POST /api/keys/{name}/revoke` (admin).
//!
//! A key is shown once, in the answer that creates it; after that only its name and 9-character
//! prefix, never the key or its hash. Creation checks the same rules as `gophergate keys create`
//! (`keys::create`); a revocation empties this process's key cache at once (other processes see
//! it within one poll of the key version).

use super::{ApiFailure, Session, json_body};
use crate::{
    events::Event,
    keys::{self, CreateKeyError, KeySpec},
    server::SharedState,
    store::{KeyRecord, StoreError, format_time},
};
use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Serialize)]
pub struct KeyItem {
    pub id: i64,
    pub name: String,
    /// The first 9 characters (`gg-` and 6 more): enough to recognise a key, useless to use.
    pub prefix: String,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    /// Allowed models; null allows every model.
    pub models: Option<Vec<String>>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub budget_usd: Option<f64>,
    pub spent_usd: f64,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub created_at: String,
}

impl KeyItem {
    pub fn new(k: &KeyRecord, now: DateTime<Utc>) -> Self {
        Self {
            id: k.id,
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            status: k.status(now),
            models: k.models.clone(),
            rpm: k.rpm,
            tpm: k.tpm,
            budget_usd: k.budget_usd,
            spent_usd: k.spent_usd,
            expires_at: k.expires_at.map(format_time),
            revoked_at: k.revoked_at.map(format_time),
            created_at: format_time(k.created_at),
        }
    }
}

pub async fn list(State(state): State<SharedState>) -> Result<Json<serde_json::Value>, ApiFailure> {
    let now = Utc::now();
    let items: Vec<KeyItem> = state
        .store
        .list_keys()
        .await?
        .iter()
        .map(|k| KeyItem::new(k, now))
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    rpm: Option<u32>,
    #[serde(default)]
    tpm: Option<u32>,
    #[serde(default)]
    budget_usd: Option<f64>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// 201 `{"key": "gg-…", "item": {…}}`: the only answer that ever holds the key.
pub async fn create(
    State(state): State<SharedState>,
    Extension(session): Extension<Session>,
    body: Bytes,
) -> Result<Response, ApiFailure> {
    session.require_admin()?;
    let body: CreateBody = json_body(
        &body,
        "{\"name\", \"models\"?, \"rpm\"?, \"tpm\"?, \"budget_usd\"?, \"expires_at\"?}",
        true,
    )?;
    let spec = KeySpec {
        name: body.name,
        models: body.models,
        rpm: body.rpm,
        tpm: body.tpm,
        budget_usd: body.budget_usd,
        expires_at: body.expires_at,
    };
    let (key, record) = keys::create(&state.store, spec)
        .await
        .map_err(|e| match e {
            CreateKeyError::Invalid { field, problem } => ApiFailure::invalid(
                format!("`{}` {problem}.", field.param()),
                Some(field.param()),
            ),
            CreateKeyError::Store(StoreError::Conflict(m)) => ApiFailure::conflict(
                format!("{m}; revoke it first or pick another name."),
                "key_exists",
            ),
            CreateKeyError::Store(e) => e.into(),
        })?;
    tracing::info!(key = %record.name, by = %session.username, "client key created");
    state.events.publish(Event::KeyCreated {
        name: record.name.clone(),
    });
    let mut resp = (
        StatusCode::CREATED,
        Json(json!({"key": key, "item": KeyItem::new(&record, Utc::now())})),
    )
        .into_response();
    // The key is in this body: no cache may keep it.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Revokes the live key with this name; it stops working on this server at once.
pub async fn revoke(
    State(state): State<SharedState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    session.require_admin()?;
    let record = state.store.revoke_key(&name).await.map_err(|e| match e {
        StoreError::NotFound(m) => ApiFailure::not_found(format!("There is {m}."), "key_not_found"),
        other => other.into(),
    })?;
    state.keys.invalidate();
    if let Some(c) = &state.coord {
        c.announce_keys_changed().await;
    }
    tracing::info!(key = %record.name, by = %session.username, "client key revoked");
    state.events.publish(Event::KeyRevoked {
        name: record.name.clone(),
    });
    Ok(Json(json!({"item": KeyItem::new(&record, Utc::now())})))
}

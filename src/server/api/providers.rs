//! `GET /api/providers`, `PUT /api/providers/{name}/key` (admin), `POST /api/providers/{name}/test`
//! (admin).
//!
//! No answer holds any part of a provider key: only whether there is one and where it came from.
//! A key set here is encrypted with the data subkey (AES-256-GCM, the provider name as associated
//! data) into `provider_credentials`, and the providers are rebuilt and swapped in at once, so it
//! works without a restart. A key from the configuration or the environment wins over a stored
//! one: storing one then changes nothing until the configured key is removed.

use super::{ApiFailure, Session, json_body};
use crate::{
    app,
    events::Event,
    providers::health::{self, Health, Probe},
    resilience::breaker::CircuitStatus,
    routing::ProviderEntry,
    secret::Secret,
    server::{AppState, SharedState},
};
use axum::{
    Extension, Json,
    body::Bytes,
    extract::{Path, State},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Longest provider key accepted (real ones are well under 200 characters).
const MAX_KEY_LEN: usize = 4096;

#[derive(Debug, Serialize)]
pub struct ProviderItem {
    pub name: String,
    pub kind: &'static str,
    pub base_url: String,
    pub enabled: bool,
    pub has_key: bool,
    /// `config` (file or environment), `database` (set from the dashboard) or `none`.
    pub key_source: &'static str,
    pub available: bool,
    pub unavailable_reason: Option<String>,
    pub health: Health,
    /// Circuit breakers of this provider's targets that have seen failures (passive health).
    pub circuits: Vec<CircuitStatus>,
}

fn item(state: &AppState, e: &ProviderEntry) -> ProviderItem {
    ProviderItem {
        name: e.settings.name.clone(),
        kind: e.settings.kind.as_str(),
        base_url: display_url(&e.settings.base_url),
        enabled: e.settings.enabled,
        has_key: e.settings.api_key.is_some(),
        key_source: e.key_source.as_str(),
        available: e.adapter.is_some(),
        unavailable_reason: e.unavailable_reason.clone(),
        health: state.provider_health.get(&e.settings.name),
        circuits: {
            let prefix = format!("{}/", e.settings.name);
            state
                .breakers
                .snapshot()
                .into_iter()
                .filter(|c| c.target.starts_with(&prefix))
                .collect()
        },
    }
}

/// `GET /api/circuits`: every target's circuit breaker that has seen a failure.
pub async fn circuits(State(state): State<SharedState>) -> Json<serde_json::Value> {
    Json(json!({ "items": state.breakers.snapshot() }))
}

/// The base URL without a password or query string, which could hold credentials.
fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.set_query(None);
            u.as_str().trim_end_matches('/').to_string()
        }
        Err(_) => String::new(),
    }
}

fn find(state: &AppState, name: &str) -> Result<ProviderItem, ApiFailure> {
    let providers = state.providers.load();
    providers
        .get(name)
        .map(|e| item(state, e))
        .ok_or_else(|| unknown(name))
}

fn unknown(name: &str) -> ApiFailure {
    ApiFailure::not_found(
        format!("There is no provider named '{name}'."),
        "provider_not_found",
    )
}

pub async fn list(State(state): State<SharedState>) -> Json<serde_json::Value> {
    let providers = state.providers.load();
    let mut items: Vec<ProviderItem> = providers.entries().map(|e| item(&state, e)).collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Json(json!({ "items": items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    api_key: Secret<String>,
}

/// Stores the provider's key (encrypted) and makes it effective now; answers `{"item": {…}}`.
pub async fn set_key(
    State(state): State<SharedState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    session.require_admin()?;
    find(&state, &name)?;
    let body: KeyBody = json_body(&body, "{\"api_key\": \"…\"}", false)?;
    let key = body.api_key.expose().trim();
    // It goes into an HTTP header: printable ASCII without spaces.
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiFailure::invalid(
            format!("`api_key` must be 1 to {MAX_KEY_LEN} printable characters without spaces."),
            Some("api_key"),
        ));
    }
    let sealed = state.data_cipher.seal(key.as_bytes(), name.as_bytes());
    state.store.put_credential(&name, &sealed).await?;
    app::reload_providers(&state)
        .await
        .map_err(ApiFailure::internal)?;
    // The last test said nothing about this key.
    let previous = state.provider_health.set(&name, Health::default());
    if previous != health::HealthStatus::Unknown {
        state.events.publish(Event::ProviderHealthChanged {
            provider: name.clone(),
            status: health::HealthStatus::Unknown,
        });
    }
    tracing::info!(provider = %name, by = %session.username, "provider key stored");
    Ok(Json(json!({ "item": find(&state, &name)? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnabledBody {
    enabled: bool,
}

/// Switches a provider on or off at once (stored; wins over the configuration's `enabled`);
/// answers `{"item": {…}}`.
pub async fn set_enabled(
    State(state): State<SharedState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    session.require_admin()?;
    find(&state, &name)?;
    let body: EnabledBody = json_body(&body, "{\"enabled\": true}", false)?;
    state
        .store
        .set_provider_enabled(&name, body.enabled)
        .await?;
    app::reload_providers(&state)
        .await
        .map_err(ApiFailure::internal)?;
    tracing::info!(provider = %name, enabled = body.enabled, by = %session.username, "provider switched");
    Ok(Json(json!({ "item": find(&state, &name)? })))
}

/// Makes one small real call with the provider's current settings and records it as its health.
pub async fn test(
    State(state): State<SharedState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Result<Json<Probe>, ApiFailure> {
    session.require_admin()?;
    let settings = state
        .providers
        .load()
        .get(&name)
        .map(|e| e.settings.clone())
        .ok_or_else(|| unknown(&name))?;
    let probe = health::probe(&settings, &state.http).await;
    state
        .provider_health
        .record(&name, probe.health(), &state.events);
    tracing::info!(provider = %name, ok = probe.ok, "provider connection tested");
    Ok(Json(probe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_lose_credentials() {
        assert_eq!(
            display_url("https://user:pw@example.com/v1?key=abc"),
            "https://example.com/v1"
        );
        assert_eq!(
            display_url("https://api.openai.com/v1"),
            "https://api.openai.com/v1"
        );
    }
}

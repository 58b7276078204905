//! Connection tests and provider health as the dashboard shows it.
//!
//! `probe` makes the smallest real upstream call that needs the key: `GET {base_url}/models`, with
//! `Authorization: Bearer` for the OpenAI-style providers and `x-goog-api-key` for Gemini. Its
//! outcome is the provider's health, kept in memory (`HealthBoard`): it says how the provider
//! answered when last asked, nothing worth persisting. Messages are the gateway's own words plus
//! the upstream's message when that cannot carry the key (see `providers::status_error`); a
//! message that still quotes any part of the key is replaced.

use super::{UpstreamError, status_error, transport_error};
use crate::{
    config::{ProviderKind, ProviderSettings},
    store::format_time,
};
use chrono::Utc;
use serde::Serialize;
use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

/// A connection test never waits longer than this (or the provider's own timeout, if shorter).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Not tested since start (or since its key changed).
    #[default]
    Unknown,
    Ok,
    Failing,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Ok => "ok",
            Self::Failing => "failing",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Health {
    pub status: HealthStatus,
    /// RFC 3339, UTC.
    pub checked_at: Option<String>,
    pub latency_ms: Option<u64>,
    pub message: Option<String>,
}

/// The latest health of each provider.
#[derive(Default)]
pub struct HealthBoard {
    // A std lock: held for one map operation, never across an await.
    map: RwLock<HashMap<String, Health>>,
}

impl HealthBoard {
    pub fn get(&self, provider: &str) -> Health {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(provider)
            .cloned()
            .unwrap_or_default()
    }

    /// Records a provider's health and tells the dashboard when its status changed.
    pub fn record(&self, provider: &str, health: Health, events: &crate::events::Events) {
        let status = health.status;
        if self.set(provider, health) != status {
            events.publish(crate::events::Event::ProviderHealthChanged {
                provider: provider.to_string(),
                status,
            });
        }
    }

    /// Records a provider's health; returns its status before.
    pub fn set(&self, provider: &str, health: Health) -> HealthStatus {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(provider.to_string(), health)
            .map(|h| h.status)
            .unwrap_or_default()
    }
}

/// The outcome of one connection test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
    pub ok: bool,
    /// The upstream's HTTP status; null when there was no answer (or no call).
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub message: String,
}

impl Probe {
    pub fn health(&self) -> Health {
        Health {
            status: if self.ok {
                HealthStatus::Ok
            } else {
                HealthStatus::Failing
            },
            checked_at: Some(format_time(Utc::now())),
            latency_ms: Some(self.latency_ms),
            message: Some(self.message.clone()),
        }
    }
}

/// Tests a provider's base URL and key with one real call.
pub async fn probe(settings: &ProviderSettings, client: &reqwest::Client) -> Probe {
    let name = settings.name.as_str();
    let key = settings.api_key.as_ref().map(|k| k.expose().as_str());
    if key.is_none() && settings.kind != ProviderKind::OpenaiCompatible {
        return Probe {
            ok: false,
            status: None,
            latency_ms: 0,
            message: format!("No API key is set for '{name}'."),
        };
    }
    let mut req = client
        .get(format!("{}/models", settings.base_url))
        .timeout(settings.timeouts.total.min(PROBE_TIMEOUT));
    if let Some(key) = key {
        req = match settings.kind {
            ProviderKind::Gemini => req.header("x-goog-api-key", key),
            _ => req.bearer_auth(key),
        };
    }
    let started = Instant::now();
    let answer = req.send().await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let (ok, status, message) = match answer {
        Ok(resp) if resp.status().is_success() => {
            let code = resp.status().as_u16();
            (
                true,
                Some(code),
                format!("'{name}' answered HTTP {code}: the base URL and key work."),
            )
        }
        Ok(resp) => {
            let code = resp.status().as_u16();
            let message = match status_error(name, key, resp).await {
                UpstreamError::Auth { .. } => {
                    format!("'{name}' rejected the API key (HTTP {code}).")
                }
                UpstreamError::Status { message, .. } => {
                    format!("'{name}' answered HTTP {code}: {message}")
                }
                other => other.to_string(),
            };
            (false, Some(code), message)
        }
        Err(e) => (false, None, transport_error(name, e).to_string()),
    };
    let message = match key {
        Some(key) if quotes_key(&message, key) => {
            format!("'{name}' answered HTTP {}.", status.unwrap_or(0))
        }
        _ => message,
    };
    Probe {
        ok,
        status,
        latency_ms,
        message,
    }
}

/// Whether `text` contains any 8 consecutive characters of `key`.
fn quotes_key(text: &str, key: &str) -> bool {
    let key: Vec<char> = key.chars().collect();
    key.len() >= 8
        && key
            .windows(8)
            .any(|w| text.contains(&w.iter().collect::<String>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spots_any_part_of_the_key() {
        let key = "sk-upstream-secret-0123456789";
        assert!(quotes_key("bad key sk-upstr***", key));
        assert!(quotes_key("…secret-01…", key));
        assert!(!quotes_key("model not found", key));
        assert!(!quotes_key("anything", "short"));
    }

    #[test]
    fn board_reports_the_previous_status() {
        let b = HealthBoard::default();
        assert_eq!(b.get("openai").status, HealthStatus::Unknown);
        let ok = Health {
            status: HealthStatus::Ok,
            ..Default::default()
        };
        assert_eq!(b.set("openai", ok.clone()), HealthStatus::Unknown);
        assert_eq!(b.set("openai", ok), HealthStatus::Ok);
        assert_eq!(b.get("openai").status, HealthStatus::Ok);
    }
}

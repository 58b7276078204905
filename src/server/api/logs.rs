//! `GET /api/logs`: the request log, newest first, with filters and an id cursor.
//!
//! `?limit=N` (default 100, at most 1000), `key_name`, `model`, `provider`, `status`, and
//! `before=<id>`: the `next_before` of the previous page (the id of its last item), `null` when
//! there is nothing older.

use super::{ApiFailure, Params};
use crate::{
    server::SharedState,
    store::{LogQuery, LogRow, StoredLog, format_time},
};
use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
};
use serde::Serialize;
use std::collections::HashMap;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// One log row as the dashboard API and the WebSocket show it. Never a secret: the key is named,
/// not shown, and the row holds no request or response content.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogItem {
    pub id: i64,
    pub request_id: String,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    pub key_name: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    pub status: u16,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub error: Option<String>,
    pub usage_source: Option<&'static str>,
    pub price_source: Option<String>,
    pub registry_version: Option<String>,
    pub price_note: Option<String>,
    /// Every upstream attempt, in order: `{"target", "status", "error", "ms"}` (`status` null when
    /// no HTTP answer came; `error` null for the one that answered). Null when none was made.
    pub attempts: Option<serde_json::Value>,
}

impl LogItem {
    pub fn new(id: i64, row: &LogRow) -> Self {
        let u = row.usage;
        Self {
            id,
            request_id: row.request_id.clone(),
            created_at: format_time(row.created_at),
            key_name: row.key_name.clone(),
            provider: row.provider.clone(),
            model: row.model.clone(),
            upstream_model: row.upstream_model.clone(),
            stream: row.stream,
            status: row.status,
            latency_ms: row.latency_ms,
            ttft_ms: row.ttft_ms,
            prompt_tokens: u.map(|u| u.prompt),
            completion_tokens: u.map(|u| u.completion),
            cached_tokens: u.map(|u| u.cached),
            reasoning_tokens: u.map(|u| u.reasoning),
            cost_usd: row.cost_usd,
            error: row.error.clone(),
            usage_source: row.usage_source,
            price_source: row.price_source.clone(),
            registry_version: row.registry_version.clone(),
            price_note: row.price_note.clone(),
            attempts: row
                .attempts
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok()),
        }
    }
}

impl From<&StoredLog> for LogItem {
    fn from(s: &StoredLog) -> Self {
        Self::new(s.id, &s.row)
    }
}

#[derive(Debug, Serialize)]
pub struct LogPage {
    pub items: Vec<LogItem>,
    pub next_before: Option<i64>,
}

pub async fn list(
    State(state): State<SharedState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<LogPage>, ApiFailure> {
    let q = parse(Params::new(query)?)?;
    let limit = q.limit as usize;
    // One more than asked for tells whether an older page exists.
    let mut rows = state
        .store
        .query_logs(&LogQuery {
            limit: q.limit + 1,
            ..q
        })
        .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_before = if more {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(LogPage {
        items: rows.iter().map(LogItem::from).collect(),
        next_before,
    }))
}

fn parse(mut p: Params) -> Result<LogQuery, ApiFailure> {
    let limit = match p.take("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => {
                return Err(ApiFailure::invalid(
                    format!("`limit` must be a whole number from 1 to {MAX_LIMIT}."),
                    Some("limit"),
                ));
            }
        },
    };
    let before = match p.take("before") {
        None => None,
        Some(v) if v.trim().is_empty() || v == "null" => None,
        Some(v) => Some(v.trim().parse::<i64>().map_err(|_| {
            ApiFailure::invalid(
                "`before` must be a log id (the `next_before` of the previous page).",
                Some("before"),
            )
        })?),
    };
    let status = match p.take("status") {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u16>()
                .ok()
                .filter(|s| (100..=599).contains(s))
                .ok_or_else(|| {
                    ApiFailure::invalid(
                        "`status` must be an HTTP status code such as 200 or 429.",
                        Some("status"),
                    )
                })?,
        ),
    };
    let text = |v: Option<String>| v.filter(|s| !s.is_empty());
    let q = LogQuery {
        limit,
        before,
        key_name: text(p.take("key_name")),
        model: text(p.take("model")),
        provider: text(p.take("provider")),
        status,
    };
    p.finish()?;
    Ok(q)
}

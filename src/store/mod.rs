//! Persistence behind narrow traits, one per concern, so handlers never see SQL and a PostgreSQL
//! backend can sit beside `sqlite` without touching them. `Store` bundles the traits for wiring.

pub mod copy;
pub mod postgres;
pub mod sqlite;

use crate::{crypto::Sealed, domain::TokenCounts};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The database could not be reached or the URL is unusable; the message never holds a
    /// password.
    #[error("{0}")]
    Connect(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A client API key as stored (never the key itself).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    /// Allowed model ids (as requested by clients); `None` allows every model.
    pub models: Option<Vec<String>>,
    pub rpm: Option<u32>,
    /// Tokens (prompt + completion) per minute allowed.
    pub tpm: Option<u32>,
    pub budget_usd: Option<f64>,
    pub spent_usd: f64,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl KeyRecord {
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }

    /// `active`, `revoked` or `expired`, as the CLI and the dashboard show it.
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if !self.is_live(now) {
            "expired"
        } else {
            "active"
        }
    }

    /// An allowed id also allows its `provider/id` form (and the other way round).
    pub fn allows_model(&self, model: &str) -> bool {
        let bare = model.split_once('/').map_or(model, |(_, rest)| rest);
        self.models.as_ref().is_none_or(|list| {
            list.iter().any(|m| {
                m == model || m == bare || m.split_once('/').is_some_and(|(_, r)| r == model)
            })
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub hash: [u8; 32],
    pub prefix: String,
    pub models: Option<Vec<String>>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub budget_usd: Option<f64>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRole {
    Admin,
    Viewer,
}

impl UserRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: UserRole,
    pub session_epoch: i64,
    pub created_at: DateTime<Utc>,
}

/// One row of the request log: exactly one per authenticated `/v1` request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRow {
    pub request_id: String,
    pub created_at: DateTime<Utc>,
    pub key_id: Option<i64>,
    pub key_name: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    pub status: u16,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub usage: Option<TokenCounts>,
    pub cost_usd: Option<f64>,
    /// `reported` (from the upstream) or `estimated`; `None` when there is no usage.
    pub usage_source: Option<&'static str>,
    pub price_source: Option<String>,
    /// The registry snapshot that priced the row.
    pub registry_version: Option<String>,
    /// What matched the price (`openai/gpt-4o`), or why the row is unpriced.
    pub price_note: Option<String>,
    pub error: Option<String>,
    /// Every upstream attempt (retries, fallbacks, skipped open circuits) as a JSON array; `None`
    /// when the request never reached the upstream stage.
    pub attempts: Option<String>,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn create_key(&self, key: NewKey) -> StoreResult<KeyRecord>;
    async fn find_key_by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<KeyRecord>>;
    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>>;
    /// Revokes the live key with this name; `NotFound` when there is none.
    async fn revoke_key(&self, name: &str) -> StoreResult<KeyRecord>;
    /// A counter bumped by every change to any key, for cross-process cache invalidation.
    async fn keys_version(&self) -> StoreResult<i64>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: UserRole,
    ) -> StoreResult<UserRecord>;
    async fn find_user(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    async fn find_user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>>;
    async fn count_users(&self) -> StoreResult<i64>;
    /// Invalidates every session of the user (logout everywhere); returns the new epoch.
    async fn bump_session_epoch(&self, id: i64) -> StoreResult<i64>;
    /// Every user, oldest first.
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Deletes the user, in one statement that refuses to remove the last admin (`Conflict`);
    /// `NotFound` when there is no such user.
    async fn delete_user(&self, username: &str) -> StoreResult<UserRecord>;
    /// Replaces the password hash and bumps the session epoch in the same statement, so every
    /// session of the user ends with the old password; returns the new epoch.
    async fn set_password(&self, id: i64, password_hash: &str) -> StoreResult<i64>;
}

#[async_trait]
pub trait CredentialStore: Send + Sync {
    async fn put_credential(&self, provider: &str, sealed: &Sealed) -> StoreResult<()>;
    async fn get_credential(&self, provider: &str) -> StoreResult<Option<Sealed>>;
    async fn list_credentials(&self) -> StoreResult<Vec<(String, Sealed)>>;
    /// A provider switched on or off from the dashboard (wins over the configuration).
    async fn set_provider_enabled(&self, provider: &str, enabled: bool) -> StoreResult<()>;
    async fn provider_enabled(&self, provider: &str) -> StoreResult<Option<bool>>;
}

/// A stored log row with its id.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLog {
    pub id: i64,
    pub row: LogRow,
}

/// Filters for reading the log, newest first. `before` is an id cursor for paging.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub limit: u32,
    pub before: Option<i64>,
    pub key_name: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub status: Option<u16>,
}

#[async_trait]
pub trait LogStore: Send + Sync {
    /// Writes the rows in one transaction (all or none) and returns their ids, in order.
    async fn insert_logs(&self, rows: &[LogRow]) -> StoreResult<Vec<i64>>;
    async fn count_logs(&self) -> StoreResult<i64>;
    async fn query_logs(&self, q: &LogQuery) -> StoreResult<Vec<StoredLog>>;
    /// Usage totals per group, from the daily rollups only (never the raw rows).
    async fn usage(&self, q: &UsageQuery) -> StoreResult<Vec<UsageTotals>>;
    /// Deletes up to `max_rows` raw log rows created before `cutoff`, oldest first, in one short
    /// transaction; returns how many went. Rollups are kept.
    async fn delete_logs_before(&self, cutoff: DateTime<Utc>, max_rows: u32) -> StoreResult<u64>;
}

/// What `/api/usage` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    Key,
    Model,
    Provider,
    Day,
}

impl UsageGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Model => "model",
            Self::Provider => "provider",
            Self::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "key" => Some(Self::Key),
            "model" => Some(Self::Model),
            "provider" => Some(Self::Provider),
            "day" => Some(Self::Day),
            _ => None,
        }
    }
}

/// Whole UTC days, both ends included (the rollups are daily), optionally narrowed to one key,
/// model or provider.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub group_by: UsageGroup,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub key_name: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
}

/// Totals for one group. `group` is `None` for rows without that attribute (e.g. no provider for
/// an unknown model); for `Day` it is `YYYY-MM-DD`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageTotals {
    pub group: Option<String>,
    pub requests: u64,
    /// Requests answered with status >= 400.
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// Sum over the priced requests; `None` when none was priced.
    pub cost_usd: Option<f64>,
    /// Requests whose cost is unknown (`cost_usd` NULL), not included in `cost_usd`.
    pub unpriced_requests: u64,
}

pub trait Store: KeyStore + UserStore + CredentialStore + LogStore {}
impl<T: KeyStore + UserStore + CredentialStore + LogStore> Store for T {}

pub type DynStore = Arc<dyn Store>;

/// Opens the store named by a database URL (`sqlite:…`, or `postgres://…` / `postgresql://…`)
/// and brings its schema up to date.
pub async fn open(url: &str, max_connections: u32) -> StoreResult<DynStore> {
    if is_postgres_url(url) {
        Ok(Arc::new(
            postgres::PgStore::open(url, max_connections).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(
            sqlite::SqliteStore::open(url, max_connections).await?,
        ))
    } else {
        Err(StoreError::Connect(
            "database.url must start with sqlite:// or postgres://".into(),
        ))
    }
}

pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_time(s: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp {s:?}: {e}")))
}

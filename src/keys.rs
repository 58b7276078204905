//! Client-key checks without a database read per request: keys are cached by hash once seen. Any
//! change to any key (revoke, from this process or another, such as the CLI) bumps a version
//! counter in the database; a watcher polls it and empties the cache, so revocation takes effect
//! within one poll interval everywhere, and at once in the process that revoked.
//!
//! `create` is the one way keys are made (the CLI and the dashboard API both call it), so both
//! check a new key's name and limits the same way.

use crate::{
    crypto::{self, KeyHash, hash_client_key},
    store::{DynStore, KeyRecord, NewKey, StoreError},
};
use chrono::{DateTime, Utc};
use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};
use tokio_util::sync::CancellationToken;

pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

pub struct KeyCache {
    store: DynStore,
    // A std lock: held only for a map lookup or insert, never across an await.
    map: RwLock<HashMap<KeyHash, Arc<KeyRecord>>>,
    generation: AtomicI64,
    db_version: AtomicI64,
}

#[derive(Debug)]
pub enum AuthError {
    Unknown,
    Revoked,
    Expired,
    Store(StoreError),
}

/// Most keys a cache holds before it starts over (bounds memory under a flood of unknown keys).
const MAX_ENTRIES: usize = 100_000;

impl KeyCache {
    pub async fn new(store: DynStore) -> Result<Arc<Self>, StoreError> {
        let version = store.keys_version().await?;
        Ok(Arc::new(Self {
            store,
            map: RwLock::new(HashMap::new()),
            generation: AtomicI64::new(0),
            db_version: AtomicI64::new(version),
        }))
    }

    pub async fn authenticate(&self, presented: &str) -> Result<Arc<KeyRecord>, AuthError> {
        let hash = hash_client_key(presented);
        let cached = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned();
        let record = match cached {
            Some(r) => r,
            None => {
                let generation = self.generation.load(Ordering::Acquire);
                let found = self
                    .store
                    .find_key_by_hash(&hash)
                    .await
                    .map_err(AuthError::Store)?
                    .ok_or(AuthError::Unknown)?;
                let found = Arc::new(found);
                // Only cache what was read before any invalidation since, or a revoke racing
                // this lookup could be undone by a stale insert.
                let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
                if self.generation.load(Ordering::Acquire) == generation {
                    if map.len() >= MAX_ENTRIES {
                        map.clear();
                    }
                    map.insert(hash, found.clone());
                }
                found
            }
        };
        if record.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if !record.is_live(Utc::now()) {
            return Err(AuthError::Expired);
        }
        Ok(record)
    }

    pub fn invalidate(&self) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    /// Checks the database's key version once; invalidates when another process changed a key.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let v = self.store.keys_version().await?;
        if self.db_version.swap(v, Ordering::AcqRel) != v {
            self.invalidate();
        }
        Ok(())
    }

    /// Worker: polls the key version until shutdown.
    pub async fn watch(self: Arc<Self>, token: CancellationToken) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.sync().await {
                        tracing::warn!(error = %e, "could not check client-key changes");
                    }
                }
            }
        }
    }
}

/// What a new client key should be, as the CLI (`keys create`) and the dashboard
/// (`POST /api/keys`) take it; `create` checks it the same way for both.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    pub name: String,
    pub models: Option<Vec<String>>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub budget_usd: Option<f64>,
    /// RFC 3339.
    pub expires_at: Option<String>,
}

/// The part of a `KeySpec` a problem is about: named as a CLI flag or as a JSON field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField {
    Name,
    Rpm,
    Tpm,
    BudgetUsd,
    ExpiresAt,
}

impl KeyField {
    pub fn flag(self) -> &'static str {
        match self {
            Self::Name => "--name",
            Self::Rpm => "--rpm",
            Self::Tpm => "--tpm",
            Self::BudgetUsd => "--budget-usd",
            Self::ExpiresAt => "--expires",
        }
    }

    pub fn param(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Rpm => "rpm",
            Self::Tpm => "tpm",
            Self::BudgetUsd => "budget_usd",
            Self::ExpiresAt => "expires_at",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateKeyError {
    /// `problem` reads after the field's name: "--rpm must be at least 1".
    #[error("{} {problem}", field.flag())]
    Invalid {
        field: KeyField,
        problem: &'static str,
    },
    /// A live key with that name exists (`Conflict`), or the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Longest key name accepted.
pub const MAX_NAME_CHARS: usize = 128;

/// Checks the spec, makes a key, stores its hash; returns the key (to be shown once) and its record.
pub async fn create(
    store: &DynStore,
    spec: KeySpec,
) -> Result<(String, KeyRecord), CreateKeyError> {
    let invalid = |field, problem| CreateKeyError::Invalid { field, problem };
    let name = spec.name.trim().to_string();
    if name.is_empty() {
        return Err(invalid(KeyField::Name, "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(invalid(
            KeyField::Name,
            "must be at most 128 characters, without control characters",
        ));
    }
    if let Some(b) = spec.budget_usd
        && (!b.is_finite() || b < 0.0)
    {
        return Err(invalid(
            KeyField::BudgetUsd,
            "must be a non-negative number of dollars",
        ));
    }
    if spec.rpm == Some(0) {
        return Err(invalid(KeyField::Rpm, "must be at least 1"));
    }
    if spec.tpm == Some(0) {
        return Err(invalid(KeyField::Tpm, "must be at least 1"));
    }
    let expires_at = spec
        .expires_at
        .map(|e| {
            DateTime::parse_from_rfc3339(e.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    invalid(
                        KeyField::ExpiresAt,
                        "must be an RFC 3339 time such as 2027-01-31T00:00:00Z",
                    )
                })
        })
        .transpose()?;
    if expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(invalid(KeyField::ExpiresAt, "must be in the future"));
    }
    let models = spec
        .models
        .map(|m| {
            m.into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|m| !m.is_empty());
    let key = crypto::generate_client_key();
    let record = store
        .create_key(NewKey {
            name,
            hash: crypto::hash_client_key(&key),
            prefix: crypto::key_prefix(&key),
            models,
            rpm: spec.rpm,
            tpm: spec.tpm,
            budget_usd: spec.budget_usd,
            expires_at,
        })
        .await?;
    Ok((key, record))
}

//! Client-key checks without a database read per request: keys are cached by hash once seen. Any
//! change to any key (revoke, from this process or another, such as the CLI) bumps a version
//! counter in the database; a watcher polls it and empties the cache, so revocation takes effect
//! within one poll interval everywhere, and at once in the process that revoked.

use crate::{
    crypto::{KeyHash, hash_client_key},
    store::{DynStore, KeyRecord, StoreError},
};
use chrono::Utc;
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

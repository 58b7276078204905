//! Where the catalog comes from: `registry.url` (an `http(s)://` URL or a local path), and the last
//! good copy cached in `<data_dir>/registry.json`, written atomically (temp file, then rename).

use super::{Catalog, Registry};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// Largest registry document accepted (the real one is a few MB).
const MAX_BYTES: usize = 64 * 1024 * 1024;

pub fn cache_path(data_dir: &Path) -> PathBuf {
    data_dir.join("registry.json")
}

/// Loads the cached copy, if there is a usable one.
pub fn load_cache(data_dir: &Path) -> Option<Catalog> {
    let path = cache_path(data_dir);
    let bytes = std::fs::read(&path).ok()?;
    match Catalog::parse(&bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring the cached registry");
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("could not download the registry: {0}")]
    Http(String),
    #[error("could not read the registry file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("the registry is larger than 64 MiB")]
    TooLarge,
}

pub async fn fetch(url: &str, client: &reqwest::Client) -> Result<Vec<u8>, FetchError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        let mut resp = client
            .get(url)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| FetchError::Http(e.without_url().to_string()))?;
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::Http(e.without_url().to_string()))?
        {
            if buf.len() + chunk.len() > MAX_BYTES {
                return Err(FetchError::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    } else {
        let path = url.strip_prefix("file://").unwrap_or(url);
        tokio::fs::read(path)
            .await
            .map_err(|source| FetchError::File {
                path: path.to_string(),
                source,
            })
    }
}

/// What one refresh did, for logs and dashboard events.
#[derive(Debug)]
pub enum RefreshOutcome {
    Updated { version: String, models: usize },
    Unchanged,
    Failed(String),
}

/// Fetches, parses and swaps in a new catalog; on any failure the current one stays.
pub async fn refresh_once(
    registry: &Registry,
    url: &str,
    data_dir: &Path,
    client: &reqwest::Client,
) -> RefreshOutcome {
    let bytes = match fetch(url, client).await {
        Ok(b) => b,
        Err(e) => return RefreshOutcome::Failed(e.to_string()),
    };
    let catalog = match Catalog::parse(&bytes) {
        Ok(c) => c,
        Err(e) => return RefreshOutcome::Failed(e.to_string()),
    };
    if catalog.version == registry.snapshot().version {
        return RefreshOutcome::Unchanged;
    }
    let (version, models) = (catalog.version.clone(), catalog.len());
    registry.replace(catalog);
    if let Err(e) = write_cache(data_dir, &bytes).await {
        tracing::warn!(error = %e, "could not cache the registry");
    }
    RefreshOutcome::Updated { version, models }
}

async fn write_cache(data_dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let path = cache_path(data_dir);
    let tmp = path.with_extension("json.tmp");
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, &path).await
}

/// Worker: refreshes at start and then every `every`, until shutdown.
pub async fn run(
    events: crate::events::Events,
    registry: Arc<Registry>,
    url: String,
    data_dir: PathBuf,
    every: Duration,
    client: reqwest::Client,
    token: CancellationToken,
) {
    // After a failure, try again sooner than the regular interval.
    let retry = every.min(Duration::from_secs(600));
    loop {
        let wait = match refresh_once(&registry, &url, &data_dir, &client).await {
            RefreshOutcome::Updated { version, models } => {
                tracing::info!(%version, models, "model registry updated");
                events.publish(crate::events::Event::RegistryRefreshed { version, models });
                every
            }
            RefreshOutcome::Unchanged => every,
            RefreshOutcome::Failed(reason) => {
                tracing::warn!(%reason, "model registry refresh failed; keeping the current catalog");
                events.publish(crate::events::Event::RegistryRefreshFailed { reason });
                retry
            }
        };
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

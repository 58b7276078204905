//! Log retention: deletes raw `request_logs` rows older than `log.retention` (a zero duration keeps
//! them forever, and then this worker is not started). The daily usage rollups are never deleted,
//! so `/api/usage` still counts what was purged.
//!
//! Rows go in small batches, each its own short transaction with a pause between, so the request
//! log writer (which needs the same write lock) never waits long behind a purge.

use crate::store::{DynStore, StoreResult};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Rows deleted per transaction.
pub const BATCH_ROWS: u32 = 5_000;
/// Pause between batches: the writer gets the lock in between.
const PAUSE: Duration = Duration::from_millis(50);
/// How often to look for old rows.
pub const INTERVAL: Duration = Duration::from_secs(3600);

/// Purges once at start, then every `interval`, until `shutdown` fires.
pub async fn run(
    store: DynStore,
    retention: Duration,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Some(cutoff) = cutoff(Utc::now(), retention) {
            match purge(&store, cutoff, &shutdown).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(rows = n, %cutoff, "deleted request log rows past retention")
                }
                Err(e) => {
                    tracing::error!(error = %e, "request log retention failed; retrying later")
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    tracing::debug!("retention worker finished");
}

/// The creation time before which rows go; `None` keeps everything (zero, or a retention longer
/// than the calendar can express).
pub fn cutoff(now: DateTime<Utc>, retention: Duration) -> Option<DateTime<Utc>> {
    if retention.is_zero() {
        return None;
    }
    now.checked_sub_signed(chrono::Duration::from_std(retention).ok()?)
}

/// Deletes every row created before `cutoff`, `BATCH_ROWS` at a time; stops early on `shutdown`.
pub async fn purge(
    store: &DynStore,
    cutoff: DateTime<Utc>,
    shutdown: &CancellationToken,
) -> StoreResult<u64> {
    let mut total = 0;
    loop {
        let n = store.delete_logs_before(cutoff, BATCH_ROWS).await?;
        total += n;
        if n < u64::from(BATCH_ROWS) {
            return Ok(total);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(total),
            _ = tokio::time::sleep(PAUSE) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_or_huge_retention_keeps_everything() {
        let now = Utc::now();
        assert_eq!(cutoff(now, Duration::ZERO), None);
        assert_eq!(cutoff(now, Duration::from_secs(u64::MAX)), None);
        assert_eq!(
            cutoff(now, Duration::from_secs(86_400)),
            Some(now - chrono::Duration::days(1))
        );
    }
}

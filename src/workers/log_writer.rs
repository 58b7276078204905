//! The request log: handlers hand rows to a bounded queue (`LogSink`); one writer task drains it in
//! batches, one transaction per batch.
//!
//! When the queue is full (the database has fallen far behind), `submit` waits for room: requests
//! slow down rather than lose a row. Rows are never dropped silently; the waits are counted.
//! A failed batch is retried with backoff and kept in memory meanwhile.

use crate::store::{DynStore, LogRow};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

#[derive(Debug, Default)]
pub struct LogStats {
    pub submitted: AtomicU64,
    /// Rows with status >= 400.
    pub errors: AtomicU64,
    /// Requests that have a `RequestLog` but no row yet.
    pub in_flight: std::sync::atomic::AtomicI64,
    pub written: AtomicU64,
    /// Times a request had to wait because the queue was full.
    pub full_waits: AtomicU64,
    pub failed_batches: AtomicU64,
    /// Rows that could not be written (only possible if the database stays down through shutdown).
    pub lost: AtomicU64,
}

#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<LogRow>,
    tracker: TaskTracker,
    stats: Arc<LogStats>,
    capacity: usize,
}

impl LogSink {
    pub fn new(capacity: usize, tracker: TaskTracker) -> (Self, mpsc::Receiver<LogRow>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Self {
                tx,
                tracker,
                stats: Arc::new(LogStats::default()),
                capacity,
            },
            rx,
        )
    }

    pub fn stats(&self) -> &Arc<LogStats> {
        &self.stats
    }

    /// Rows waiting to be written.
    pub fn depth(&self) -> usize {
        self.capacity - self.tx.capacity()
    }

    fn count(&self, row: &LogRow) {
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        if row.status >= 400 {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a row; waits only when the queue is full.
    pub async fn submit(&self, row: LogRow) {
        self.count(&row);
        match self.tx.try_send(row) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(row)) => {
                self.stats.full_waits.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("request log queue is full; waiting for the writer");
                if let Err(e) = self.tx.send(row).await {
                    self.lost(&e.0);
                }
            }
            Err(mpsc::error::TrySendError::Closed(row)) => self.lost(&row),
        }
    }

    /// For places that cannot wait (a `Drop`): queues now, or hands the wait to a tracked task.
    pub fn submit_detached(&self, row: LogRow) {
        self.count(&row);
        match self.tx.try_send(row) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(row)) => {
                self.stats.full_waits.fetch_add(1, Ordering::Relaxed);
                let tx = self.tx.clone();
                let this = self.clone();
                self.tracker.spawn(async move {
                    if let Err(e) = tx.send(row).await {
                        this.lost(&e.0);
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(row)) => self.lost(&row),
        }
    }

    fn lost(&self, row: &LogRow) {
        self.stats.lost.fetch_add(1, Ordering::Relaxed);
        tracing::error!(request_id = %row.request_id, "request log is closed; row not written");
    }
}

/// Drains the queue until `close` fires and every queued row is written.
/// Called with each row and its id once written (the dashboard's live view).
pub type OnWritten = Box<dyn Fn(i64, &LogRow) + Send + Sync>;

/// How long the writer lets a batch fill after its first row. A transaction costs far more than a
/// row (begin, rollup upserts, commit, and a round trip to the database thread for each), so
/// writing whatever had arrived, often one row, took about a quarter of the gateway's CPU at a few
/// thousand requests per second. Rows reach the database and the live view this much later.
pub const LINGER: Duration = Duration::from_millis(50);

pub async fn run(
    store: DynStore,
    mut rx: mpsc::Receiver<LogRow>,
    batch_size: usize,
    stats: Arc<LogStats>,
    on_written: OnWritten,
    close: CancellationToken,
) {
    let mut buf = Vec::with_capacity(batch_size);
    let mut closing = false;
    loop {
        let n = tokio::select! {
            biased;
            n = rx.recv_many(&mut buf, batch_size) => n,
            _ = close.cancelled(), if !closing => {
                // No new rows after this; everything already queued is still received.
                rx.close();
                closing = true;
                continue;
            }
        };
        if n == 0 {
            break;
        }
        if !closing {
            closing = fill(&mut rx, &mut buf, batch_size, &close).await;
        }
        for (id, row) in write_batch(&store, &buf, &stats, &close)
            .await
            .iter()
            .zip(&buf)
        {
            on_written(*id, row);
        }
        buf.clear();
    }
    tracing::debug!("request log writer finished");
}

/// Adds rows to `buf` until it holds `batch_size`, `LINGER` has passed, or `close` fires (then the
/// queue is closed and `true` returned; the caller drains the rest).
///
/// The queue is looked at every `TICK` rather than awaited: awaiting it woke this task, often on
/// the other core, for every request, and at a few hundred requests per second those wake-ups
/// cost more CPU and latency than the rows themselves (BENCHMARKS.md).
async fn fill(
    rx: &mut mpsc::Receiver<LogRow>,
    buf: &mut Vec<LogRow>,
    batch_size: usize,
    close: &CancellationToken,
) -> bool {
    let deadline = tokio::time::Instant::now() + LINGER;
    loop {
        while buf.len() < batch_size {
            match rx.try_recv() {
                Ok(row) => buf.push(row),
                Err(_) => break,
            }
        }
        let now = tokio::time::Instant::now();
        if buf.len() >= batch_size || now >= deadline {
            return false;
        }
        tokio::select! {
            biased;
            _ = close.cancelled() => {
                rx.close();
                return true;
            }
            _ = tokio::time::sleep_until(deadline.min(now + TICK)) => {}
        }
    }
}

/// How often a filling batch looks at the queue: a full batch waits at most this long.
const TICK: Duration = Duration::from_millis(5);

/// Writes a batch, retrying; returns the rows' ids (empty if it had to give up).
async fn write_batch(
    store: &DynStore,
    rows: &[LogRow],
    stats: &LogStats,
    close: &CancellationToken,
) -> Vec<i64> {
    let mut delay = Duration::from_millis(50);
    for attempt in 1u32.. {
        match store.insert_logs(rows).await {
            Ok(ids) => {
                stats
                    .written
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                return ids;
            }
            Err(e) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, attempt, rows = rows.len(), "writing request log rows failed; retrying");
                // While serving, keep retrying: the queue applies back-pressure meanwhile. During
                // shutdown, give up after a bounded number of attempts so the process can exit.
                if close.is_cancelled() && attempt >= 10 {
                    stats.lost.fetch_add(rows.len() as u64, Ordering::Relaxed);
                    tracing::error!(
                        rows = rows.len(),
                        "giving up on request log rows at shutdown"
                    );
                    return Vec::new();
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{Instant, sleep};

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_within_a_tick_a_partial_one_after_the_linger() {
        let (tx, mut rx) = mpsc::channel(16);
        let close = CancellationToken::new();
        let mut buf = vec![LogRow::default()];

        // Three more rows arrive 12 ms in: the batch of four is full then, and goes at the next
        // look at the queue, long before the linger is over.
        let start = Instant::now();
        let sender = tokio::spawn(async move {
            sleep(Duration::from_millis(12)).await;
            for _ in 0..3 {
                tx.send(LogRow::default()).await.unwrap();
            }
            tx
        });
        assert!(!fill(&mut rx, &mut buf, 4, &close).await);
        let took = start.elapsed();
        assert_eq!(buf.len(), 4);
        assert!(
            took >= Duration::from_millis(12) && took <= Duration::from_millis(12) + TICK,
            "{took:?}"
        );

        // One row and nothing after it: it waits out the linger, no longer.
        let tx = sender.await.unwrap();
        buf.clear();
        buf.push(LogRow::default());
        let start = Instant::now();
        assert!(!fill(&mut rx, &mut buf, 4, &close).await);
        assert_eq!(buf.len(), 1);
        assert_eq!(start.elapsed(), LINGER);

        // A close ends the filling at once and closes the queue.
        close.cancel();
        assert!(fill(&mut rx, &mut buf, 4, &close).await);
        assert!(tx.send(LogRow::default()).await.is_err());
    }
}

//! The WebSocket hub: one broadcast channel of pre-serialised JSON messages
//! (`{"type": "request_log" | "metrics" | "event", "data": …}`), fanned out to every dashboard.
//!
//! Each message is serialised once and shared (`Arc<str>`) by all clients. The channel is a bounded
//! ring: a browser that falls behind skips what it missed (and is told how many, in a `lagged`
//! event) instead of slowing the gateway or growing memory; publishing never waits.

use serde::Serialize;
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use tokio::sync::broadcast;

/// Messages kept for slow clients before they start skipping.
pub const CAPACITY: usize = 1024;

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<str>>,
    stats: Arc<HubStats>,
    /// With Redis: request logs and events also go to the other instances' hubs.
    fanout: Option<tokio::sync::mpsc::Sender<Arc<str>>>,
}

#[derive(Debug, Default)]
pub struct HubStats {
    pub published: AtomicU64,
    /// Messages skipped by slow clients, summed over clients.
    pub skipped: AtomicU64,
    pub clients: AtomicU64,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a T,
}

impl Default for Hub {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self {
            tx,
            stats: Arc::default(),
            fanout: None,
        }
    }
}

impl Hub {
    /// Shares this hub's request logs and events with other instances (metrics stay local: each
    /// dashboard shows the instance it is connected to).
    pub fn with_fanout(mut self, tx: tokio::sync::mpsc::Sender<Arc<str>>) -> Self {
        self.fanout = Some(tx);
        self
    }

    /// Whether a message would go anywhere (local dashboards or other instances).
    pub fn wanted(&self) -> bool {
        self.fanout.is_some() || self.tx.receiver_count() > 0
    }

    /// Serialises and broadcasts; free when nobody is connected (and nothing is shared).
    pub fn publish<T: Serialize>(&self, kind: &str, data: &T) {
        let fanout = self.fanout.as_ref().filter(|_| kind != "metrics");
        let local = self.tx.receiver_count() > 0;
        if !local && fanout.is_none() {
            return;
        }
        match serde_json::to_string(&Envelope { kind, data }) {
            Ok(json) => {
                let json: Arc<str> = json.into();
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                if let Some(f) = fanout
                    && f.try_send(json.clone()).is_err()
                {
                    self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                }
                if local {
                    let _ = self.tx.send(json);
                }
            }
            Err(e) => tracing::warn!(error = %e, kind, "could not serialise a hub message"),
        }
    }

    /// A message from another instance, for this instance's dashboards only.
    pub fn inject(&self, message: Arc<str>) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(message);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    pub fn stats(&self) -> &Arc<HubStats> {
        &self.stats
    }

    pub fn has_clients(&self) -> bool {
        self.tx.receiver_count() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_clients_skip_instead_of_blocking() {
        let hub = Hub::default();
        let mut slow = hub.subscribe();
        let mut fast = hub.subscribe();
        for i in 0..(CAPACITY + 10) {
            hub.publish("event", &i);
            // The fast client keeps up.
            assert!(
                fast.recv()
                    .await
                    .unwrap()
                    .contains(&format!("\"data\":{i}"))
            );
        }
        // The slow one lost the oldest ten and is told so, then reads on.
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
        assert!(slow.recv().await.unwrap().contains("\"data\":10"));
    }

    #[test]
    fn publishing_without_clients_is_free() {
        let hub = Hub::default();
        hub.publish("event", &1);
        assert_eq!(hub.stats().published.load(Ordering::Relaxed), 0);
    }
}

//! Things worth telling an operator as they happen (registry refreshed or failed, a key created…).
//! Published on a broadcast channel: the dashboard's WebSocket hub forwards them; publishing never
//! waits and never fails when nobody listens.

use serde::Serialize;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    RegistryRefreshed {
        version: String,
        models: usize,
    },
    RegistryRefreshFailed {
        reason: String,
    },
    KeyCreated {
        name: String,
    },
    KeyRevoked {
        name: String,
    },
    /// A target's circuit breaker changed state (opened, half-open trial, closed again).
    CircuitChanged {
        target: String,
        state: crate::resilience::breaker::CircuitState,
        reason: Option<String>,
    },
    /// A connection test found a provider in another state than before.
    ProviderHealthChanged {
        provider: String,
        status: crate::providers::health::HealthStatus,
    },
}

#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        // Subscribers that fall this far behind skip events (and are told how many).
        let (tx, _) = broadcast::channel(256);
        Self { tx }
    }
}

impl Events {
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

//! Active health checks (`health.probe_interval`): every usable provider is asked the cheapest
//! question that needs its key (`GET {base_url}/models`) at a fixed interval, and the outcome is
//! its health, as a connection test from the dashboard would record it. Passive health (circuit
//! breakers fed by real traffic) works without this; probes also cover idle providers.

use crate::{providers::health, server::SharedState};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn run(state: SharedState, interval: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let usable: Vec<_> = state
            .providers
            .load()
            .entries()
            .filter(|e| e.adapter.is_some())
            .map(|e| e.settings.clone())
            .collect();
        for settings in usable {
            let probe = tokio::select! {
                p = health::probe(&settings, &state.http) => p,
                _ = stop.cancelled() => return,
            };
            state
                .provider_health
                .record(&settings.name, probe.health(), &state.events);
        }
    }
}

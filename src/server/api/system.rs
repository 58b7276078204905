//! `GET /api/system`: version, uptime, the effective configuration (every secret as `********`,
//! which is how `Secret` serialises), the request-log queue's counters and the latest metrics
//! sample (null until the sampler has taken one).

use crate::{server::SharedState, workers::metrics::Sample};
use axum::{Json, extract::State};
use serde_json::json;
use std::sync::atomic::Ordering;

pub async fn info(State(state): State<SharedState>) -> Json<serde_json::Value> {
    let stats = state.logs.stats();
    let sample = state.sampler.latest();
    let metrics = (*sample != Sample::default()).then_some(&*sample);
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started_at.elapsed().as_secs(),
        "config": &*state.config,
        "log": {
            "queue_depth": state.logs.depth(),
            "written": stats.written.load(Ordering::Relaxed),
            "full_waits": stats.full_waits.load(Ordering::Relaxed),
            "lost": stats.lost.load(Ordering::Relaxed),
        },
        "metrics": metrics,
    }))
}

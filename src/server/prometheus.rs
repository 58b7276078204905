//! Prometheus metrics at `GET /metrics` (when `metrics.enabled`, the default), built on the
//! `metrics` facade and `metrics-exporter-prometheus`'s recorder.
//!
//! Every request is counted once, from `RequestLog::take_row`, the one place each `/v1` request's
//! row is finished. Labels stay few: `provider` (a configured name or `none`), `model` (the model
//! as requested, but only for requests that reached a provider and succeeded, so a client's typos
//! cannot mint label values; `other` otherwise) and `status_class` (`2xx`, `4xx`, `5xx`). No
//! per-key labels.
//!
//! The recorder is process-wide (the `metrics` facade has one global recorder), installed once
//! (`install`) however many `App`s a process starts; recording without it is a no-op. Cost is a
//! float, which `metrics` counters cannot hold, so `gophergate_cost_usd_total` is a gauge that
//! only ever grows.

use crate::{server::SharedState, store::LogRow};
use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, OnceLock, RwLock, atomic::Ordering},
    time::Duration,
};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

pub const REQUESTS: &str = "gophergate_requests_total";
pub const TOKENS: &str = "gophergate_tokens_total";
pub const COST: &str = "gophergate_cost_usd_total";
pub const DURATION: &str = "gophergate_request_duration_seconds";
pub const TTFT: &str = "gophergate_ttft_seconds";
pub const LOG_QUEUE_DEPTH: &str = "gophergate_log_queue_depth";
pub const HUB_CLIENTS: &str = "gophergate_hub_clients";

const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
const TTFT_BUCKETS: [f64; 11] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];
/// How often histogram samples are folded into buckets when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder on the first call; later calls return the same handle.
/// `None` when another recorder was installed first (then `/metrics` serves nothing).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DURATION.into()), &DURATION_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(TTFT.into()), &TTFT_BUCKETS))
                .and_then(|b| b.install_recorder());
            match installed {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not install the Prometheus recorder");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    describe_counter!(REQUESTS, "Requests on /v1 that passed authentication.");
    describe_counter!(
        TOKENS,
        "Tokens by kind: prompt, completion, cached, reasoning."
    );
    describe_gauge!(COST, "Cost in USD of priced requests (only grows).");
    describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "Time from request to last byte."
    );
    describe_histogram!(
        TTFT,
        metrics::Unit::Seconds,
        "Time to the first streamed token."
    );
    describe_gauge!(LOG_QUEUE_DEPTH, "Request-log rows waiting to be written.");
    describe_gauge!(HUB_CLIENTS, "Dashboards connected to the live feed.");
}

/// The series one `provider`/`model`/status class writes to. Registering a series builds its
/// key (label strings, a hash) and looks it up in the recorder's registry; doing that for seven
/// series on every request was a visible share of the gateway's CPU, so handles are kept.
struct Series {
    requests: Counter,
    /// prompt, completion, cached, reasoning; registered on first use, like the cost.
    tokens: [OnceLock<Counter>; 4],
    cost: OnceLock<Gauge>,
}

struct ProviderSeries {
    duration: Histogram,
    ttft: Arc<OnceLock<Histogram>>,
    /// model → the series of each status class (`0xx`..`5xx`, index = status / 100).
    models: HashMap<String, [OnceLock<Arc<Series>>; 6]>,
}

const TOKEN_KINDS: [&str; 4] = ["prompt", "completion", "cached", "reasoning"];

/// provider → its series. Bounded like the labels themselves: provider names come from the
/// configuration, models only from requests that succeeded.
static SERIES: LazyLock<RwLock<HashMap<String, ProviderSeries>>> = LazyLock::new(RwLock::default);

type Handles = (Arc<Series>, Histogram, Arc<OnceLock<Histogram>>);

fn series(provider: &str, model: &str, status: u16) -> Handles {
    let class = usize::from((status / 100).min(5));
    let found = {
        let map = SERIES.read().unwrap_or_else(|e| e.into_inner());
        map.get(provider).and_then(|p| {
            let s = p.models.get(model)?[class].get()?.clone();
            Some((s, p.duration.clone(), p.ttft.clone()))
        })
    };
    if let Some(found) = found {
        return found;
    }
    let mut map = SERIES.write().unwrap_or_else(|e| e.into_inner());
    let p = map
        .entry(provider.to_string())
        .or_insert_with(|| ProviderSeries {
            duration: histogram!(DURATION, "provider" => provider.to_string()),
            ttft: Arc::default(),
            models: HashMap::new(),
        });
    let s = p.models.entry(model.to_string()).or_default()[class]
        .get_or_init(|| {
            Arc::new(Series {
                requests: counter!(REQUESTS, "provider" => provider.to_string(), "model" => model.to_string(), "status_class" => format!("{class}xx")),
                tokens: Default::default(),
                cost: OnceLock::new(),
            })
        })
        .clone();
    (s, p.duration.clone(), p.ttft.clone())
}

/// Counts one finished request (its row is complete: status, latency, usage, cost).
pub fn record(row: &LogRow) {
    let provider = row.provider.as_deref().unwrap_or("none");
    let model = match (&row.provider, &row.model) {
        (Some(_), Some(m)) if row.status < 400 => m.as_str(),
        _ => "other",
    };
    let (s, duration, ttft) = series(provider, model, row.status);
    s.requests.increment(1);
    if let Some(u) = row.usage {
        for (i, n) in [u.prompt, u.completion, u.cached, u.reasoning]
            .into_iter()
            .enumerate()
        {
            if n > 0 {
                s.tokens[i]
                    .get_or_init(|| counter!(TOKENS, "provider" => provider.to_string(), "model" => model.to_string(), "kind" => TOKEN_KINDS[i]))
                    .increment(n);
            }
        }
    }
    if let Some(cost) = row.cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
        s.cost
            .get_or_init(
                || gauge!(COST, "provider" => provider.to_string(), "model" => model.to_string()),
            )
            .increment(cost);
    }
    duration.record(row.latency_ms as f64 / 1000.0);
    if let Some(t) = row.ttft_ms {
        ttft.get_or_init(|| histogram!(TTFT, "provider" => provider.to_string()))
            .record(t as f64 / 1000.0);
    }
}

/// Worker: folds histogram samples into buckets regularly, so memory stays flat between scrapes.
pub async fn upkeep(handle: &'static PrometheusHandle, token: CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// `GET /metrics`: the text exposition format; `metrics.token`, when set, is required as a
/// bearer token (compared in constant time), else 401.
pub async fn scrape(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        let expected = token.expose().trim().as_bytes();
        if !bool::from(presented.as_bytes().ct_eq(expected)) {
            let mut resp = crate::server::api::ApiFailure {
                status: StatusCode::UNAUTHORIZED,
                message: "/metrics needs `Authorization: Bearer <metrics.token>`.".into(),
                kind: "authentication_error",
                param: None,
                code: Some("invalid_metrics_token"),
            }
            .into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    let Some(handle) = install() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n",
        )
            .into_response();
    };
    gauge!(LOG_QUEUE_DEPTH).set(state.logs.depth() as f64);
    gauge!(HUB_CLIENTS).set(state.hub.stats().clients.load(Ordering::Relaxed) as f64);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
        .into_response()
}

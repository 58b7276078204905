//! The HTTP surface: `router(state)` builds every route and the middleware stack, so tests can
//! drive it without a socket and `App` serves it on one.

pub mod api;
pub mod attempts;
pub mod listen;
pub mod middleware;
pub mod prometheus;
pub mod relay;
pub mod request_log;
pub mod session;
pub mod shards;
pub mod v1;

use crate::{
    config::Config, keys::KeyCache, routing::Router as ProviderRouter, store::DynStore,
    workers::log_writer::LogSink,
};
use axum::{
    Json, Router,
    extract::DefaultBodyLimit,
    middleware::{from_fn, from_fn_with_state},
    routing::get,
};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct AppState {
    pub config: Arc<Config>,
    pub store: DynStore,
    pub keys: Arc<KeyCache>,
    /// The provider adapters, swapped whole when a provider key is set from the dashboard
    /// (`app::reload_providers`); requests in flight keep the adapter they started with.
    pub providers: arc_swap::ArcSwap<ProviderRouter>,
    /// Encrypts provider keys stored in the database (`MasterKey::data_cipher`; the master key
    /// itself is not kept).
    pub data_cipher: crate::crypto::DataCipher,
    /// The pooled upstream client the providers share (also for connection tests).
    pub http: reqwest::Client,
    /// Serialises provider reloads, so the last one to finish has read every stored key.
    pub provider_reload: tokio::sync::Mutex<()>,
    /// The latest connection-test outcome per provider.
    pub provider_health: crate::providers::health::HealthBoard,
    /// Failed dashboard sign-ins per client IP and per username.
    pub login_limiter: api::limiter::LoginLimiter,
    pub started_at: std::time::Instant,
    pub registry: Arc<crate::registry::Registry>,
    pub pricer: crate::registry::pricing::Pricer,
    pub budgets: Arc<crate::budget::Budgets>,
    pub rate_limits: crate::ratelimit::RateLimiter,
    pub token_limits: Arc<crate::ratelimit::TokenLimiter>,
    /// Passive health: one circuit breaker per `provider/model` target.
    pub breakers: Arc<crate::resilience::breaker::Breakers>,
    /// Shared counters and live feed across instances (`redis.url`); `None` keeps them in process.
    pub coord: Option<Arc<crate::coordination::Coordinator>>,
    pub events: crate::events::Events,
    pub logs: LogSink,
    /// Signs and checks dashboard session tokens (key: `MasterKey::session_key`).
    pub sessions: session::SessionSigner,
    /// Fired when the graceful-stop grace period is over: in-flight work ends now.
    pub hard_stop: CancellationToken,
    /// Fired when a graceful stop begins (long-lived connections such as WebSockets close).
    pub shutdown: CancellationToken,
    pub hub: crate::hub::Hub,
    pub sampler: Arc<crate::workers::metrics::Sampler>,
}

pub type SharedState = Arc<AppState>;

/// Layer order, outermost first: request id (so every later layer and every response has one),
/// tracing span, security headers (CSP, nosniff, frame denial; everything but `/v1` gets the
/// layer), then per-route: body limit and client-key auth on `/v1`; session auth and the
/// CSRF rule on `/api` (every route but `/api/auth/login`, see `api::routes`); `/metrics` checks
/// its own optional token (`prometheus::scrape`).
pub fn router(state: SharedState) -> Router {
    let v1 = v1::routes()
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(from_fn_with_state(
            state.clone(),
            middleware::require_client_key,
        ));
    // Browser-facing headers for everything but the API clients call (one layer less on `/v1`).
    let site = Router::new()
        .nest("/api", api::routes(state.clone()))
        .route("/health", get(health))
        .merge(metrics_route(&state))
        .merge(crate::dashboard::routes())
        .layer(from_fn(crate::dashboard::security_headers));
    Router::new()
        .nest("/v1", v1)
        .merge(site)
        .with_state(state)
        .layer(middleware::trace_layer())
        .layer(from_fn(middleware::request_id))
}

/// `/metrics` when `metrics.enabled` (else the path is a 404 like any unknown one).
fn metrics_route(state: &SharedState) -> Router<SharedState> {
    if state.config.metrics.enabled {
        Router::new().route("/metrics", get(prometheus::scrape))
    } else {
        Router::new()
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

//! The HTTP surface: `router(state)` builds every route and the middleware stack, so tests can
//! drive it without a socket and `App` serves it on one.

pub mod api;
pub mod middleware;
pub mod relay;
pub mod request_log;
pub mod session;
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
    pub providers: Arc<ProviderRouter>,
    pub registry: Arc<crate::registry::Registry>,
    pub pricer: crate::registry::pricing::Pricer,
    pub budgets: Arc<crate::budget::Budgets>,
    pub events: crate::events::Events,
    pub logs: LogSink,
    /// Signs and checks dashboard session tokens (key: `MasterKey::session_key`).
    pub sessions: session::SessionSigner,
    /// Fired when the graceful-stop grace period is over: in-flight work ends now.
    pub hard_stop: CancellationToken,
}

pub type SharedState = Arc<AppState>;

/// Layer order, outermost first: request id (so every later layer and every response has one),
/// tracing span, then per-route: body limit and client-key auth on `/v1`; session auth on `/api`
/// (every route but `/api/auth/login`, see `api::routes`).
pub fn router(state: SharedState) -> Router {
    let v1 = v1::routes()
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(from_fn_with_state(
            state.clone(),
            middleware::require_client_key,
        ));
    Router::new()
        .nest("/v1", v1)
        .nest("/api", api::routes(state.clone()))
        .route("/health", get(health))
        .with_state(state)
        .layer(middleware::trace_layer())
        .layer(from_fn(middleware::request_id))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}
